//! `[llm]`: what LLM answers cost, so that hits count the dollars they saved.
//!
//! ```toml
//! [llm.prices]                  # USD per million tokens
//! "gpt-4o-mini" = { input = 0.15, output = 0.60 }
//! ```

use std::collections::BTreeMap;

use super::table::{Key, Reload::Live, Table};
use super::{ConfigError, Setting};

/// What a model's tokens cost, in USD per million.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    /// Per million input tokens.
    pub input: f64,
    /// Per million output tokens.
    pub output: f64,
}

/// The `[llm]` section.
#[derive(Clone, Debug, Default)]
pub struct LlmConfig {
    /// By model name (a dated model uses its base entry).
    pub prices: BTreeMap<String, Price>,
}

pub(super) const KEYS: &[Key] = &[("prices", Live)];

impl LlmConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(LlmConfig, Vec<Setting>), ConfigError> {
        let mut prices = BTreeMap::new();
        if let Some(mut list) = t.table("prices")? {
            for (model, _, at) in list.keys() {
                let Some(mut p) = list.table(&model)? else {
                    return Err(list.error(at, &model, "expected { input = N, output = N }"));
                };
                let usd = "must be a number of USD per million tokens, at least 0";
                let valid = |x: f64| x.is_finite() && x >= 0.0;
                let price = Price {
                    input: p.opt_float("input", valid, usd)?.unwrap_or(0.0),
                    output: p.opt_float("output", valid, usd)?.unwrap_or(0.0),
                };
                p.finish(&[("input", Live), ("output", Live)])?;
                prices.insert(model, price);
            }
        }
        Ok((LlmConfig { prices }, t.finish(KEYS)?))
    }

    /// The price of `model` (its own entry, or its base model's when it is dated).
    pub fn price(&self, model: &str) -> Option<Price> {
        let name = crate::llm::priced_as(model, |m| self.prices.contains_key(m))?;
        self.prices.get(name).copied()
    }
}

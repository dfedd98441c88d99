//! Upstream limits shared by the fleet: the rate, the daily budget and the back-off of
//! each upstream in Redis, checked and spent by one script in one round trip.

use std::time::Duration;

use fred::interfaces::{ClientLike, KeysInterface, LuaInterface};
use fred::types::Expiration;

use super::scripts::BUDGET_SCRIPT;
use super::{RedisTier, Unavailable};
use crate::store::{BudgetAnswer, BudgetAsk};

impl RedisTier {
    fn budget_keys(&self, upstream: &str, day: u64) -> Vec<String> {
        // One hash slot per upstream: the script's keys sit together on a cluster.
        let tag = format!("{{{}:b:{upstream}}}", self.settings.prefix);
        vec![
            format!("{tag}:tat"),
            format!("{tag}:day:{day}"),
            format!("{tag}:backoff"),
        ]
    }

    /// Checks and spends `ask` against the fleet's state.
    pub async fn take_budget(&self, ask: &BudgetAsk<'_>) -> Result<BudgetAnswer, Unavailable> {
        let keys = self.budget_keys(ask.upstream, ask.now_us / 86_400_000_000);
        let (interval, tolerance) = ask.rate.unwrap_or((0, 0));
        let args = vec![
            ask.now_us.to_string(),
            interval.to_string(),
            tolerance.to_string(),
            ask.cost.to_string(),
            ask.budget.unwrap_or(0).to_string(),
            ask.reset.as_millis().to_string(),
        ];
        let client = self.pool.next().with_options(&self.options);
        let (status, wait, remaining): (i64, i64, i64) = self
            .call("budget", client.eval(BUDGET_SCRIPT, keys, args))
            .await?;
        let remaining = u64::try_from(remaining).ok();
        let ms = Duration::from_millis(wait.max(0) as u64);
        Ok(match status {
            0 => BudgetAnswer::Granted { remaining },
            1 => BudgetAnswer::Rate {
                wait: Duration::from_micros(wait.max(0) as u64),
            },
            2 => BudgetAnswer::Budget {
                reset: ms,
                remaining,
            },
            _ => BudgetAnswer::Backoff { left: ms },
        })
    }

    /// Backs `upstream` off fleet-wide for `left`.
    pub async fn back_off(&self, upstream: &str, left: Duration) {
        let key = self.budget_keys(upstream, 0).swap_remove(2);
        let ms = left.as_millis().max(1) as i64;
        let client = self.pool.next().with_options(&self.options);
        let _ = self
            .call(
                "backoff",
                client.set::<(), _, _>(key, 1, Some(Expiration::PX(ms)), None, false),
            )
            .await;
    }
}

//! The limits counted in this process: a GCRA for the rate, a counter per UTC day for the
//! budget — the whole limits without Redis, this instance's share while Redis is away.
//! The same arithmetic as the fleet's script.

use std::time::Duration;

use crate::store::BudgetAnswer;

/// A day in microseconds (the unit of every time here).
pub(super) const DAY_US: u64 = 86_400_000_000;

/// What this process has counted.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// The rate's theoretical arrival time (µs).
    tat: u64,
    /// The UTC day `spent` counts (days since the epoch).
    day: u64,
    /// Units spent that day.
    spent: u64,
}

/// The GCRA parameters of `n` requests per `per` (emission interval, burst tolerance; µs).
/// Requests are spaced evenly, without a burst: no window of length `per` ever holds more
/// than `n`, whatever a metered upstream counts by.
pub(super) fn gcra(n: f64, per: Duration) -> (u64, u64) {
    let n = n.max(1e-9);
    let interval = (per.as_micros() as f64 / n).ceil().max(1.0) as u64;
    (interval, 0)
}

/// From `now` (µs) to the next UTC midnight.
pub(super) fn to_midnight(now: u64) -> Duration {
    Duration::from_micros(DAY_US - now % DAY_US)
}

impl Counts {
    /// Checks and spends one request at `now` (µs): the budget, then the rate.
    pub fn take(
        &mut self,
        now: u64,
        rate: Option<(u64, u64)>,
        (cost, budget): (u64, Option<u64>),
    ) -> BudgetAnswer {
        let today = now / DAY_US;
        if self.day != today {
            self.day = today;
            self.spent = 0;
        }
        if let Some(limit) = budget {
            if self.spent + cost > limit {
                return BudgetAnswer::Budget {
                    reset: to_midnight(now),
                    remaining: Some(limit.saturating_sub(self.spent)),
                };
            }
        }
        if let Some((interval, tolerance)) = rate {
            let tat = self.tat.max(now);
            if now + tolerance < tat {
                return BudgetAnswer::Rate {
                    wait: Duration::from_micros(tat - tolerance - now),
                };
            }
            self.tat = tat + interval;
        }
        self.spent += cost;
        BudgetAnswer::Granted {
            remaining: budget.map(|b| b.saturating_sub(self.spent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_and_a_budget_per_day() {
        let mut c = Counts::default();
        let rate = Some(gcra(2.0, Duration::from_secs(1)));
        let (now, ms) = (10 * DAY_US + 5, 1000);
        assert!(matches!(
            c.take(now, rate, (1, Some(3))),
            BudgetAnswer::Granted { remaining: Some(2) }
        ));
        let BudgetAnswer::Rate { wait } = c.take(now + 100 * ms, rate, (1, Some(3))) else {
            panic!()
        };
        assert_eq!(wait, Duration::from_millis(400));
        assert!(matches!(
            c.take(now + 500 * ms, rate, (1, Some(3))),
            BudgetAnswer::Granted { remaining: Some(1) }
        ));
        assert!(matches!(
            c.take(now + 1000 * ms, rate, (1, Some(3))),
            BudgetAnswer::Granted { remaining: Some(0) }
        ));
        assert!(matches!(
            c.take(now + 5000 * ms, rate, (1, Some(3))),
            BudgetAnswer::Budget { .. }
        ));
        // A new UTC day, a new budget.
        assert!(matches!(
            c.take(11 * DAY_US, rate, (1, Some(3))),
            BudgetAnswer::Granted { remaining: Some(2) }
        ));
    }
}

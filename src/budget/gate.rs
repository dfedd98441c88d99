//! One upstream's gate: its back-off, its slots in flight, its rate and budget (through the
//! fleet's script, or counted here).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::local::{gcra, to_midnight, Counts};
use super::{GateReport, Refused};
use crate::config::UpstreamLimits;
use crate::status::Throttle;
use crate::store::{BudgetAnswer, BudgetAsk, FleetBudget};
use crate::time::{now_ms, now_us};

/// A request's right to be in flight to its upstream; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// A slot on an upstream without limits.
    pub fn free() -> Slot {
        Slot { _permit: None }
    }
}

/// One upstream's limits and their state.
pub struct Gate {
    name: Arc<str>,
    limits: UpstreamLimits,
    /// Whether a fleet tier (Redis) shares the rate and budget.
    shared: bool,
    slots: Option<Arc<Semaphore>>,
    local: Mutex<Counts>,
    /// When the back-off ends (ms since the epoch; 0: none), and the status it came with.
    backoff_until: AtomicU64,
    backoff_status: AtomicU64,
    /// Units left today as last seen (-1: unknown or no budget).
    remaining: AtomicI64,
    /// Until when a client's request found the budget spent (ms; 0: it was not).
    spent_until: AtomicU64,
    /// The UTC days (since the epoch) the budget ran out, the last thirty.
    spent_days: Mutex<std::collections::BTreeSet<u64>>,
    /// Whether the fleet tier failed to answer the last time it was asked.
    fleet_down: AtomicBool,
    /// When the fleet was last asked about an upstream without limits (ms).
    fleet_asked: AtomicU64,
    throttled: [AtomicU64; 4],
}

impl Gate {
    pub(super) fn new(name: &str, limits: UpstreamLimits, shared: bool) -> Gate {
        Gate {
            name: name.into(),
            limits,
            shared,
            slots: limits
                .max_concurrent
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            local: Mutex::default(),
            backoff_until: AtomicU64::new(0),
            backoff_status: AtomicU64::new(429),
            remaining: AtomicI64::new(limits.budget.map_or(-1, |b| b as i64)),
            spent_until: AtomicU64::new(0),
            spent_days: Mutex::default(),
            fleet_down: AtomicBool::new(false),
            fleet_asked: AtomicU64::new(0),
            throttled: Default::default(),
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether any limit applies (a back-off always may).
    pub(super) fn limited(&self) -> bool {
        self.limits.any() || self.backoff_until.load(Relaxed) > 0 || self.shared
    }

    fn refuse(&self, reason: Throttle, retry_after: Duration) -> Refused {
        self.throttled[reason.slot()].fetch_add(1, Relaxed);
        let status = match reason {
            Throttle::Backoff => self.backoff_status.load(Relaxed) as u16,
            _ => 429,
        };
        Refused {
            reason,
            retry_after,
            status,
        }
    }

    /// The back-off left now, if any.
    fn backing_off(&self, now: u64) -> Option<Duration> {
        let until = self.backoff_until.load(Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Leaves the upstream alone for `left` (a `429`/`503` with `Retry-After`).
    pub(super) fn back_off(&self, status: u16, left: Duration) {
        let until = now_ms() + left.as_millis() as u64;
        self.backoff_until.fetch_max(until, Relaxed);
        self.backoff_status.store(u64::from(status), Relaxed);
    }

    pub(super) async fn admit(
        &self,
        fleet: Option<&dyn FleetBudget>,
        cost: u64,
        background: bool,
    ) -> Result<Slot, Refused> {
        let queue = if background {
            Duration::ZERO
        } else {
            self.limits.queue
        };
        let deadline = tokio::time::Instant::now() + queue;
        if let Some(left) = self.backing_off(now_ms()) {
            return Err(self.refuse(Throttle::Backoff, left));
        }
        let permit = self.slot(deadline, background).await?;
        if background && self.reserved_for_clients(cost) {
            return Err(self.refuse(Throttle::Budget, to_midnight(now_us())));
        }
        loop {
            match self.take(fleet, cost).await {
                BudgetAnswer::Granted { remaining } => {
                    self.remaining
                        .store(remaining.map_or(-1, |r| r as i64), Relaxed);
                    self.spent_until.store(0, Relaxed);
                    return Ok(Slot { _permit: permit });
                }
                BudgetAnswer::Rate { wait } if tokio::time::Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait).await;
                }
                BudgetAnswer::Rate { wait } => return Err(self.refuse(Throttle::Rate, wait)),
                BudgetAnswer::Budget { reset, remaining } => {
                    self.remaining
                        .store(remaining.map_or(-1, |r| r as i64), Relaxed);
                    let until = now_ms() + reset.as_millis() as u64;
                    self.spent_until.store(until, Relaxed);
                    let mut days = self.spent_days.lock();
                    days.insert(now_ms() / 86_400_000);
                    while days.len() > 30 {
                        days.pop_first();
                    }
                    return Err(self.refuse(Throttle::Budget, reset));
                }
                BudgetAnswer::Backoff { left } => {
                    self.back_off(self.backoff_status.load(Relaxed) as u16, left);
                    return Err(self.refuse(Throttle::Backoff, left));
                }
            }
        }
    }

    /// A slot in flight (`max_concurrent`): a client waits until `deadline`; a background
    /// fetch takes one only if another stays free.
    async fn slot(
        &self,
        deadline: tokio::time::Instant,
        background: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        let busy = || self.refuse(Throttle::Concurrency, Duration::from_secs(1));
        if background {
            if slots.available_permits() <= 1 {
                return Err(busy());
            }
            return slots
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| busy());
        }
        match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(busy()),
        }
    }

    /// Whether a background fetch of `cost` units would eat into the last tenth of the
    /// budget, kept for clients.
    fn reserved_for_clients(&self, cost: u64) -> bool {
        let (Some(budget), Ok(left)) = (
            self.limits.budget,
            u64::try_from(self.remaining.load(Relaxed)),
        ) else {
            return false;
        };
        left < cost + budget / 10
    }

    /// Checks and spends one request's rate and units: through the fleet, or here (the
    /// whole limits without a fleet, this instance's share while it is away).
    async fn take(&self, fleet: Option<&dyn FleetBudget>, cost: u64) -> BudgetAnswer {
        let now = now_us();
        if let (true, Some(fleet)) = (self.shared, fleet.filter(|_| self.ask_fleet(now / 1000))) {
            let ask = BudgetAsk {
                upstream: &self.name,
                now_us: now,
                rate: self.limits.rate.map(|r| gcra(r.n as f64, r.per)),
                cost,
                budget: self.limits.budget,
                reset: to_midnight(now),
            };
            match fleet.take(ask).await {
                Ok(answer) => {
                    self.fleet_down.store(false, Relaxed);
                    return answer;
                }
                Err(()) => self.fleet_down.store(true, Relaxed),
            }
        }
        let share = if self.shared {
            self.limits.local_share
        } else {
            1.0
        };
        let rate = self.limits.rate.map(|r| gcra(r.n as f64 * share, r.per));
        let budget = self
            .limits
            .budget
            .map(|b| (b as f64 * share).floor() as u64);
        self.local.lock().take(now, rate, (cost, budget))
    }

    /// Whether to ask the fleet: always for an upstream with limits; for one without, at
    /// most once a second (to hear of a back-off another instance was asked for).
    fn ask_fleet(&self, now: u64) -> bool {
        if self.limits.any() {
            return true;
        }
        let last = self.fleet_asked.load(Relaxed);
        now >= last + 1000
            && self
                .fleet_asked
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }

    /// Why the upstream needs attention (`/health`), if it does: backing off, limits
    /// counted on this instance's share because the fleet tier is away, or its budget
    /// spent for today.
    pub fn trouble(&self) -> Option<String> {
        let now = now_ms();
        let name = &self.name;
        if let Some(left) = self.backing_off(now) {
            return Some(format!(
                "upstream {name} is backing off for {}s",
                left.as_secs().max(1)
            ));
        }
        let spent = self.spent_until.load(Relaxed) > now;
        if self.shared && self.limits.any() && self.fleet_down.load(Relaxed) {
            let share = self.limits.local_share;
            let and_spent = if spent {
                "; that share of its budget is spent"
            } else {
                ""
            };
            return Some(format!(
                "upstream {name}: limits counted on this instance's share ({share}) while redis is away{and_spent}"
            ));
        }
        spent.then(|| format!("upstream {name} has spent its budget for today"))
    }

    /// How the upstream is doing.
    pub fn report(&self) -> GateReport {
        let now = now_ms();
        let in_flight = match (&self.slots, self.limits.max_concurrent) {
            (Some(s), Some(n)) => u64::from(n).saturating_sub(s.available_permits() as u64),
            _ => 0,
        };
        GateReport {
            in_flight,
            max_concurrent: self.limits.max_concurrent,
            rate: self.limits.rate.map(|r| r.to_string()),
            budget: self.limits.budget,
            budget_remaining: u64::try_from(self.remaining.load(Relaxed)).ok(),
            budget_resets_in: to_midnight(now * 1000).as_secs(),
            backoff_seconds: self.backing_off(now).map_or(0, |d| d.as_secs()),
            throttled: Throttle::ALL
                .iter()
                .map(|t| (t.as_str(), self.throttled[t.slot()].load(Relaxed)))
                .collect(),
            days_spent: self.spent_days.lock().len() as u64,
            counted: match (self.shared, self.fleet_down.load(Relaxed)) {
                (false, _) => "local",
                (true, false) => "fleet",
                (true, true) => "local-share",
            },
        }
    }
}

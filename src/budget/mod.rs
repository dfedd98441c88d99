//! Upstream budgets: what each upstream may be asked, across keys and across the fleet.
//! A request that goes upstream first takes a [`Slot`] from its upstream's [`Gate`]:
//!
//! - **back-off**: an upstream that answered `429`/`503` with `Retry-After` is left alone
//!   until then (fleet-wide through Redis);
//! - **concurrency**: at most `max_concurrent` requests in flight, per instance;
//! - **rate** (`"5/s"`, GCRA) and **budget** (`"10000/day"` units, a rule's `cost` each,
//!   per UTC day): fleet-wide through Redis in one script round trip; while Redis is away,
//!   each instance spends a local share (`local_share`) of both — never unbounded.
//!
//! A client miss waits for a slot at most `queue`; then it gets the over-budget answer
//! (a stale entry within `stale_if_budget`, or `429` with `Retry-After`). A background
//! fetch (warming, refresh) never waits, never takes the last free slot, and leaves the
//! last tenth of a budget to clients.
//!
//! ```
//! use larder::budget::Gates;
//! use larder::config::{Rate, UpstreamLimits};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let limits = UpstreamLimits {
//!     rate: Some(Rate { n: 1, per: std::time::Duration::from_secs(60) }),
//!     queue: std::time::Duration::ZERO,
//!     ..Default::default()
//! };
//! let gates = Gates::new(&[("default".into(), limits)], None);
//! assert!(gates.admit("default", 1, false).await.is_ok());
//! let refused = gates.admit("default", 1, false).await.unwrap_err();
//! assert_eq!(refused.reason, larder::status::Throttle::Rate);
//! # });
//! ```

mod gate;
mod local;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use gate::{Gate, Slot};

use crate::config::UpstreamLimits;
use crate::status::Throttle;
use crate::store::LowerTier;

/// Why a request may not go upstream now, and when it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The limit it met.
    pub reason: Throttle,
    /// When to ask again (`Retry-After`).
    pub retry_after: Duration,
    /// The status to answer with: `429`, or the upstream's own `503` while it backs off.
    pub status: u16,
}

/// The gates of every upstream, and the tier that shares their limits with the fleet.
pub struct Gates {
    gates: Vec<Arc<Gate>>,
    fleet: Option<Arc<dyn LowerTier>>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.gates.iter().map(|g| g.name()))
            .finish()
    }
}

impl Gates {
    /// A gate per named upstream with these limits; `fleet` shares rates, budgets and
    /// back-offs with other instances.
    pub fn new(upstreams: &[(String, UpstreamLimits)], fleet: Option<Arc<dyn LowerTier>>) -> Gates {
        let shared = fleet.as_ref().is_some_and(|t| t.budget().is_some());
        Gates {
            gates: upstreams
                .iter()
                .map(|(name, limits)| Arc::new(Gate::new(name, *limits, shared)))
                .collect(),
            fleet: fleet.filter(|t| t.budget().is_some()),
        }
    }

    /// The gate of `upstream` (the default one when the name is unknown).
    pub fn gate(&self, upstream: &str) -> Option<&Arc<Gate>> {
        self.gates
            .iter()
            .find(|g| g.name() == upstream)
            .or_else(|| self.gates.iter().find(|g| g.name() == "default"))
    }

    /// Every gate.
    pub fn all(&self) -> &[Arc<Gate>] {
        &self.gates
    }

    /// A slot on `upstream` for a request costing `cost` units; `background` requests
    /// (warming, refreshes) never wait and yield to clients.
    pub async fn admit(
        &self,
        upstream: &str,
        cost: u64,
        background: bool,
    ) -> Result<Slot, Refused> {
        match self.gate(upstream) {
            Some(g) if g.limited() => {
                let fleet = self.fleet.as_ref().and_then(|t| t.budget());
                g.admit(fleet, cost, background).await
            }
            _ => Ok(Slot::free()),
        }
    }

    /// The upstream answered `status` with `Retry-After` `left`: leave it alone until then,
    /// here and (through Redis) everywhere.
    pub async fn back_off(&self, upstream: &str, status: u16, left: Duration) {
        let Some(g) = self.gate(upstream) else { return };
        g.back_off(status, left);
        if let Some(fleet) = self.fleet.as_ref().and_then(|t| t.budget()) {
            fleet.back_off(g.name(), left).await;
        }
    }
}

/// One upstream's state, as `/admin/stats` and `/metrics` show it.
#[derive(Clone, Debug, Serialize)]
pub struct GateReport {
    /// Requests in flight now.
    pub in_flight: u64,
    /// Its `max_concurrent`.
    pub max_concurrent: Option<u32>,
    /// Its `rate`, as configured.
    pub rate: Option<String>,
    /// Its daily budget (units).
    pub budget: Option<u64>,
    /// Units left today (as last seen: fleet-wide with Redis).
    pub budget_remaining: Option<u64>,
    /// Seconds to the budget's reset (the next UTC midnight).
    pub budget_resets_in: u64,
    /// Seconds of back-off left (0: none).
    pub backoff_seconds: u64,
    /// Requests refused (or served stale) for each reason.
    pub throttled: std::collections::BTreeMap<&'static str, u64>,
    /// UTC days (of the last thirty seen) on which the budget ran out.
    pub days_spent: u64,
    /// Where its rate and budget are counted: `fleet` (Redis), `local` (no Redis), or
    /// `local-share` (Redis away: this instance's share).
    pub counted: &'static str,
}

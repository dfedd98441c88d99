//! One request, in request order. Data flows one way:
//!
//! ```text
//! layer::CacheService::call
//!   hygiene::admit    the trust boundary: refuse, clean, normalise            (pure)
//!   route             rule (first match), request policy, key                 (pure)
//!   ├─ Forward ─► forward: upstream as it is; a 2xx mutation invalidates
//!   └─ Plan ─► memory lookup (synchronous; a hit is answered here, no box)
//!        ├─ Fresh / ServeStale ─► respond (Bytes clones; Cache-Status from the outcome)
//!        └─ otherwise ─► fill::run, phase by phase, the only place that awaits:
//!             Lookup (tiers below memory, promote) ─► Decide ─► Join (single flight,
//!             then the fleet lease) ─► Fetch (upstream, with validators) ─► Admit
//!             (304 refresh, stale-if-error, storable?) ─► Store (every tier) ─► Respond
//! ```
//!
//! Each step is a function of the request's state; [`miss::Phase`] names where a miss is.

mod admit;
mod fetch;
pub(crate) mod fill;
mod forward;
mod gate;
mod join;
mod keyed;
mod llm;
mod miss;
mod partial;
pub(crate) mod respond;
mod revalidate;
mod rewarm;
mod route;
mod settle;
mod stream;

use std::sync::Arc;

use crate::cache::{Cache, Settings};

pub(crate) use forward::forward;
pub use gate::Background;
pub(crate) use respond::{error_response, Answering};
pub use route::RouteTo;
pub(crate) use route::{route, Plan, Route};

/// What one request works with: the inner service, the cache, and the settings it began
/// with (held for the whole request, so a reload never mixes two configs in one).
pub(crate) struct Ctx<S> {
    pub inner: S,
    pub cache: Cache,
    pub settings: Arc<Settings>,
}

//! The RFC 9111 decisions in one place: which directives govern this cache, whether a
//! response may be stored and for how long it is fresh, what a request asks of the cache,
//! and whether a stored entry may answer a request now.
//!
//! Everything here is pure: a decision is a function of headers, a rule and the time.

mod directives;
mod freshness;
mod request;
mod usable;

pub use directives::{cache_directives, withheld_fields, Directives, DELTA_MAX};
pub use freshness::{
    decide, explicit_lifetime, has_validator, heuristically_cacheable, initial_age_ms, vary_names,
    vary_star, Freshness, StoreInput,
};
pub use request::RequestPolicy;
pub use usable::{
    classify, refresh_ahead_due, stale_if_budget_allows, stale_if_error_allows, upstream_failed,
    Usable,
};

pub use crate::semantics::dates::{format_date, parse_date};
pub use crate::time::now_ms;

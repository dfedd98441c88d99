//! What a stored response carries of its freshness (RFC 9111 §4.2), decided by the policy
//! when it is admitted.

/// How long a stored response stays fresh and what may be done with it once stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime in milliseconds.
    pub lifetime_ms: u64,
    /// Corrected initial age in milliseconds (RFC 9111 §4.2.3).
    pub initial_age_ms: u64,
    /// Must be revalidated before every use (`no-cache`).
    pub no_cache: bool,
    /// Must not be served stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// `stale-while-revalidate` window in seconds.
    pub stale_while_revalidate: u32,
    /// `stale-if-error` window in seconds.
    pub stale_if_error: u32,
    /// How long past its freshness the entry is kept for serving while its upstream is
    /// over budget (the rule's `stale_if_budget`), in seconds; stored to the minute.
    pub stale_if_budget: u32,
}

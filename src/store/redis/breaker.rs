//! A circuit breaker for the shared tier: after a run of failures it opens and every call
//! fails at once (the cache serves from L1 or goes upstream) until a cool-down passes;
//! then one probe is let through, and its success closes the breaker again.
//!
//! ```
//! use larder::store::redis::{Breaker, State};
//! let b = Breaker::new(3, 1_000);
//! for _ in 0..3 { assert!(b.allow(0)); b.failure(0); }
//! assert_eq!(b.state(0), State::Open);
//! assert!(!b.allow(500));
//! assert!(b.allow(1_000));       // the probe
//! assert!(!b.allow(1_000));      // only one at a time
//! assert!(b.success());          // it was open: callers may replay what they queued
//! assert_eq!(b.state(1_000), State::Closed);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// The cool-down passed: one probe may go through.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Counts consecutive failures and opens after `threshold` of them, for `cooldown_ms`.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    /// When the breaker may probe again (ms since epoch); 0 while closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    opened: AtomicU64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// The state at `now` (ms).
    pub fn state(&self, now: u64) -> State {
        match self.open_until.load(SeqCst) {
            0 => State::Closed,
            until if now < until => State::Open,
            _ => State::HalfOpen,
        }
    }

    /// Whether a call may go through now (at most one probe while half-open).
    pub fn allow(&self, now: u64) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen => self
                .probing
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_ok(),
        }
    }

    /// Records a success; returns true if that closed an open breaker.
    pub fn success(&self) -> bool {
        self.failures.store(0, SeqCst);
        self.probing.store(false, SeqCst);
        self.open_until.swap(0, SeqCst) != 0
    }

    /// Records a failure at `now` (ms).
    pub fn failure(&self, now: u64) {
        let failures = self.failures.fetch_add(1, SeqCst) + 1;
        let probe_failed = self.probing.swap(false, SeqCst);
        if (probe_failed || failures >= self.threshold)
            && self.open_until.swap(now + self.cooldown_ms, SeqCst) == 0
        {
            self.opened.fetch_add(1, SeqCst);
        }
    }

    /// How many times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(SeqCst)
    }
}

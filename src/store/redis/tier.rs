//! Redis as a [`LowerTier`] and a [`FleetLease`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::RedisTier;
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::store::{
    BoxFuture, BudgetAnswer, BudgetAsk, FleetBudget, FleetLease, Invalidation, Lease, LowerTier,
    TierReport, Write,
};

impl LowerTier for RedisTier {
    fn tagged(&self, tag: u64, limit: usize) -> BoxFuture<'_, Vec<(CacheKey, Arc<Entry>)>> {
        Box::pin(self.tagged_entries(tag, limit))
    }

    fn list<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, crate::store::Page> {
        Box::pin(self.page(cursor, limit))
    }

    fn tier(&self) -> crate::status::Tier {
        crate::status::Tier::L2
    }

    fn section(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>> {
        Box::pin(RedisTier::get(self, key))
    }

    fn begin_fill(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(RedisTier::begin_fill(self))
    }

    fn put<'a>(&'a self, w: Write<'a>) -> BoxFuture<'a, bool> {
        Box::pin(RedisTier::put(self, w.key, w.entry, w.epoch))
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation, soft: bool) -> BoxFuture<'a, Option<u64>> {
        Box::pin(RedisTier::invalidate(self, what, soft))
    }

    fn report(&self) -> TierReport {
        TierReport {
            status: if self.is_up() { "up" } else { "down" },
            breaker: self.breaker_state().as_str(),
            breaker_opened: self.breaker_opened(),
            errors: self.errors(),
            disk: None,
            memory: self.memory(),
        }
    }

    fn wait_ready(&self, limit: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // Ready once connected and the tags being purged are known.
            self.wait_connected(limit).await && self.set_aside_known().await
        })
    }

    fn fleet(&self) -> Option<&dyn FleetLease> {
        Some(self)
    }

    fn budget(&self) -> Option<&dyn FleetBudget> {
        Some(self)
    }

    fn keep<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        Box::pin(RedisTier::keep(self, name, bytes))
    }

    fn kept<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(RedisTier::kept(self, name))
    }
}

impl FleetBudget for RedisTier {
    fn take<'a>(&'a self, ask: BudgetAsk<'a>) -> BoxFuture<'a, Result<BudgetAnswer, ()>> {
        Box::pin(async move { self.take_budget(&ask).await.map_err(|_| ()) })
    }

    fn back_off<'a>(&'a self, upstream: &'a str, left: Duration) -> BoxFuture<'a, ()> {
        Box::pin(RedisTier::back_off(self, upstream, left))
    }
}

impl FleetLease for RedisTier {
    fn lease<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Lease> {
        Box::pin(RedisTier::lease(self, key))
    }

    fn release<'a>(&'a self, key: &'a CacheKey, token: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(RedisTier::release(self, key, token))
    }

    fn fill_waiter(&self, key: &CacheKey) -> watch::Receiver<()> {
        RedisTier::fill_waiter(self, key)
    }

    fn wait_fill<'a>(
        &'a self,
        key: &'a CacheKey,
        waiter: watch::Receiver<()>,
        limit: Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(RedisTier::wait_fill(self, key, waiter, limit))
    }
}

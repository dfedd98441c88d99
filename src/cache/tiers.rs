//! The tiers `[store]` asks for, as the store opens them.

use crate::config::{Backend, StoreConfig};
use crate::store::disk::DiskSettings;
use crate::store::redis::RedisSettings;
use crate::store::{TierSettings, Tiers};

/// Opens the tiers of `c`: memory, the disk tier when `[store.disk]` is there, Redis for
/// the redis backend.
pub(crate) fn open(c: &StoreConfig) -> Result<Tiers, crate::Error> {
    Tiers::open(settings(c))
}

fn settings(c: &StoreConfig) -> TierSettings {
    let redis = match (c.backend, &c.redis_url) {
        (Backend::Redis, Some(url)) => Some(RedisSettings {
            url: url.clone(),
            prefix: c.redis_prefix.clone(),
            pool: c.redis_pool,
            timeout: c.redis_timeout,
            connect_timeout: c.redis_connect_timeout,
            lease: c.redis_lease,
        }),
        _ => None,
    };
    TierSettings {
        memory_max: c.memory_max,
        disk: c.disk.as_ref().map(|d| DiskSettings {
            path: d.path.clone(),
            max: d.max,
            write: d.write,
            fleet: None,
        }),
        redis,
        l1: c.l1,
        l1_ttl: c.l1_ttl,
    }
}

//! `[log]`: the access log.

use super::table::{Reload::Live, Table};
use super::{ConfigError, Setting};

pub(super) const KEYS: &[super::table::Key] = &[("access", Live)];

/// The `[log]` section.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// One structured line per request (target `larder::access`).
    pub access: bool,
}

impl LogConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(LogConfig, Vec<Setting>), ConfigError> {
        let log = LogConfig {
            access: t.bool("access", true)?,
        };
        Ok((log, t.finish(KEYS)?))
    }
}

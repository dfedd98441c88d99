//! `[admin]`: the admin API's listener and token.

use std::net::SocketAddr;

use super::table::{Key, Reload::Live, Reload::Restart, Table};
use super::{ConfigError, Setting};

/// The `[admin]` section.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where the admin API listens.
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token for `/admin/*`.
    pub token_env: String,
    /// `tls_cert` and `tls_key`: serve the admin API over HTTPS (re-read on reload).
    pub tls: Option<super::TlsPair>,
}

pub(super) const KEYS: &[Key] = &[("listen", Restart), ("token_env", Live)];

impl AdminConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(AdminConfig, Vec<Setting>), ConfigError> {
        let admin = AdminConfig {
            listen: t.addr("listen", "127.0.0.1:9091")?,
            token_env: t
                .parsed("token_env", Some("LARDER_ADMIN_TOKEN"), |s| {
                    if s.is_empty() {
                        Err("must name an environment variable".into())
                    } else {
                        Ok(s.to_string())
                    }
                })?
                .unwrap_or_default(),
            tls: super::proxy::tls_pair(&mut t)?,
        };
        let keys: Vec<Key> = KEYS.iter().chain(super::proxy::TLS_KEYS).copied().collect();
        Ok((admin, t.finish(&keys)?))
    }
}

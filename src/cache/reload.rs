//! Hot reload: the config file re-read and validated, rules and cache settings swapped in
//! atomically; what only a restart can change is named.

use super::Cache;
use crate::config::Config;

impl Cache {
    /// Re-reads the config file, validates it fully and swaps in its rules and cache
    /// settings. A bad file is refused (the old config stays) with its
    /// `file:line:col: field: message` error. Returns the settings that changed but only
    /// take effect after a restart (listeners, upstream, store).
    /// A `jwt:` user source whose key cannot be read refuses the reload the same way.
    pub fn reload_file(&self) -> Result<Vec<String>, crate::Error> {
        self.reload_file_checked(|_| Ok(()))
    }

    /// [`Cache::reload_file`], refusing also what `check` refuses: the sidecar passes the
    /// checks `larder serve` makes at start, so a reload is as strict as a start.
    pub fn reload_file_checked(
        &self,
        check: impl Fn(&Config) -> Result<(), crate::Error>,
    ) -> Result<Vec<String>, crate::Error> {
        let old = self.settings();
        let new = match Config::load(&old.config.path)
            .map_err(crate::Error::from)
            .and_then(|c| check(&c).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running config stays in force");
                return Err(e);
            }
        };
        let restart = old.config.restart_needed(&new);
        if let Err(e) = self.reload(new) {
            tracing::error!(error = %e, "reload refused; the running config stays in force");
            return Err(e);
        }
        if restart.is_empty() {
            tracing::info!(path = %old.config.path.display(), "config reloaded");
        } else {
            tracing::warn!(path = %old.config.path.display(), restart_needed = ?restart, "config reloaded; these changes need a restart");
        }
        Ok(restart)
    }
}

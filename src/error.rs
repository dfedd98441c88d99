//! The crate's error: what went wrong setting a cache or the sidecar up, by kind.
//!
//! Serving never returns one: a cache failure becomes a miss or a bypass (and a metric),
//! and the layer keeps the inner service's own error type.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A config error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted path of the offending field, e.g. `rule[2].ttl`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Why a cache, a layer or the sidecar could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid (`file:line:col: field: what`).
    Config(ConfigError),
    /// A rule built in code does not validate.
    Rule(String),
    /// Something the config refers to is missing from the environment.
    Environment(String),
    /// A store could not be set up (for example a Redis URL the client rejects).
    Store(String),
    /// An upstream is unusable (no URL, no host, a CA file that does not load).
    Upstream(String),
    /// A listener could not bind.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which listener (`proxy.listen`, `admin.listen`).
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A listener's TLS certificate or key does not load.
    Tls {
        /// Which setting (`proxy.tls_cert`, `admin.tls_cert`).
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Something needs a Tokio runtime and there is none.
    Runtime(String),
    /// Warming needs something to send requests through.
    NoWarmer,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Rule(m)
            | Error::Environment(m)
            | Error::Store(m)
            | Error::Upstream(m)
            | Error::Runtime(m) => f.write_str(m),
            Error::Listen { addr, what, source } => {
                write!(f, "cannot listen on {addr} ({what}): {source}")
            }
            Error::Tls { field, message } => write!(f, "{field}: {message}"),
            Error::NoWarmer => {
                f.write_str("warming needs the sidecar, or a warmer set with Cache::set_warmer")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Listen { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

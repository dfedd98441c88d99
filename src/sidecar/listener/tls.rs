//! TLS termination for a listener: the server config a new connection gets (rebuilt from
//! the certificate files after every reload, so new connections get a renewed certificate
//! while open ones keep theirs), and plaintext sent to the TLS port answered `400`.

use std::sync::Arc;

use parking_lot::Mutex;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

use super::conn::ActivityIo;
use crate::cache::{Cache, Settings};
use crate::config::{Config, TlsPair};
use crate::tls::Resumption;

/// Which TLS pair of the config a listener serves.
pub type PickPair = fn(&Config) -> Option<&TlsPair>;

/// The settings a server config was built for, and that config (`None`: TLS off).
type Built = (Arc<Settings>, Option<Arc<ServerConfig>>);

/// TLS for one listener, following the config in force.
pub struct Terminator {
    cache: Cache,
    pick: PickPair,
    resumption: Resumption,
    built: Mutex<Option<Built>>,
}

impl Terminator {
    /// TLS for the listener whose pair `pick` chooses; fails when the pair does not load.
    pub fn new(cache: Cache, pick: PickPair) -> Result<Terminator, String> {
        let terminator = Terminator {
            cache,
            pick,
            resumption: Resumption::new()?,
            built: Mutex::new(None),
        };
        let settings = terminator.cache.settings();
        let config = match pick(&settings.config) {
            Some(pair) => Some(terminator.build(pair)?),
            None => None,
        };
        *terminator.built.lock() = Some((settings, config));
        Ok(terminator)
    }

    fn build(&self, pair: &TlsPair) -> Result<Arc<ServerConfig>, String> {
        crate::tls::server_config(&pair.cert, &pair.key, &self.resumption)
    }

    /// The server config for a connection accepted now (`None`: plaintext). After a reload
    /// the files are read again; if they no longer load, the previous config stays.
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        let settings = self.cache.settings();
        let mut built = self.built.lock();
        let previous = match &*built {
            Some((at, config)) if Arc::ptr_eq(at, &settings) => return config.clone(),
            Some((_, config)) => config.clone(),
            None => None,
        };
        let fresh = match (self.pick)(&settings.config) {
            None => None,
            Some(pair) => self.build(pair).map(Some).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the reloaded certificate does not load; keeping the previous one");
                previous
            }),
        };
        *built = Some((settings, fresh.clone()));
        fresh
    }
}

/// The TLS stream of an accepted connection, or `None` when the client closed, sent
/// plaintext (answered `400`) or failed the handshake.
pub(super) async fn accept(
    mut io: ActivityIo,
    config: Arc<ServerConfig>,
) -> Option<TlsStream<ActivityIo>> {
    let mut first = [0u8; 1];
    match io.inner.peek(&mut first).await {
        Ok(1) if crate::tls::opens_handshake(&first) => {}
        Ok(1) => {
            refuse_plaintext(&mut io).await;
            return None;
        }
        _ => return None,
    }
    match tokio_rustls::TlsAcceptor::from(config).accept(io).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Answers a plaintext request on the TLS port with a `400` that says so, then closes.
async fn refuse_plaintext(io: &mut ActivityIo) {
    const BODY: &str = "this port speaks HTTPS: use an https:// URL\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // Read what the client sent, so closing does not reset the connection under the answer.
    let mut head = [0u8; 8192];
    let _ = io.read(&mut head).await;
    let _ = io.write_all(answer.as_bytes()).await;
    let _ = io.shutdown().await;
}

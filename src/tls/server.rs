//! TLS on larder's own listeners: a certificate chain and its key from PEM files, TLS 1.2
//! and 1.3 only, ALPN offering h2 and http/1.1, and session resumption (tickets and a
//! session cache) that outlives a reload of the certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What lets clients resume sessions: kept across certificate reloads, so a client that
/// resumed before a reload still resumes after it.
#[derive(Clone)]
pub struct Resumption {
    tickets: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resumption")
    }
}

impl Resumption {
    /// Fresh ticket keys (rotated every 6 hours by rustls) and a cache of 4096 sessions.
    pub fn new() -> Result<Resumption, String> {
        let tickets = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
        Ok(Resumption {
            tickets,
            sessions: ServerSessionMemoryCache::new(4096),
        })
    }
}

/// The server config for the pair at `cert` (a PEM chain, leaf first) and `key` (a PEM
/// private key: PKCS#8, PKCS#1 or SEC1). Errors name the file and what is wrong with it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    resumption: &Resumption,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = built(cert, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = resumption.tickets.clone();
    config.session_storage = resumption.sessions.clone();
    Ok(Arc::new(config))
}

/// Whether the pair at `cert` and `key` makes a server config (the config loader's check).
pub fn check_pair(cert: &Path, key: &Path) -> Result<(), String> {
    built(cert, key).map(drop)
}

fn built(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = read_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{}: no PEM private key in it", key.display())
        }
        e => format!("{}: {e}", key.display()),
    })?;
    ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert.display()))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chain = certs
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(chain)
}

/// Whether the first bytes a client sent open a TLS handshake (a TLS record of type
/// handshake); anything else is plaintext sent to a TLS port.
pub fn opens_handshake(first: &[u8]) -> bool {
    first.first() == Some(&0x16)
}

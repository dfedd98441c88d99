//! TLS through rustls, for every part that speaks it: the client side (upstreams,
//! `larder ctl` against an HTTPS admin API) and the server side (the proxy and admin
//! listeners). One crypto provider for all of them: aws-lc-rs, the one rustls recommends
//! (it has the post-quantum key exchange X25519MLKEM768, which ring lacks).

pub mod client;
pub mod server;

use std::sync::Arc;

pub use client::{client_config, reason};
pub use server::{opens_handshake, server_config, Resumption};

/// The crypto provider every TLS config is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

//! TLS through rustls, for every part that speaks it: the client side (upstreams,
//! `larder ctl` against an HTTPS admin API). One crypto provider for all of them.

pub mod client;

pub use client::{client_config, reason};

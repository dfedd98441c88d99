//! HTTP semantics (RFC 9110) that every part of larder shares: what a request must look
//! like before the cache or an upstream sees it, and which header fields belong to one
//! hop only.
//!
//! (The folder is not called `http` so that it never shadows the `http` crate.)

pub mod conditionals;
pub mod dates;
pub mod hygiene;
pub mod json;
pub mod lists;
pub mod media;
pub mod ranges;
pub mod structured;
pub mod uri;

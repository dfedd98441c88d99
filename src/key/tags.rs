//! Tag ids: the rule's and the origin's tags, and the implicit URL and user tags every
//! entry carries, as stable 64-bit ids (every instance and tier agrees on them).

use super::{hex, normalized_url, UserId};

/// A tag's 64-bit id (stable across instances, so Redis and every L1 agree).
///
/// ```
/// assert_eq!(larder::key::tag_id("job:1"), larder::key::tag_id("job:1"));
/// assert_ne!(larder::key::tag_id("job:1"), larder::key::tag_id("job:2"));
/// ```
pub fn tag_id(tag: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"larder tag v1\0");
    h.update(tag.as_bytes());
    let bytes = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(out)
}

/// The implicit tag every entry of one URL carries (all methods, users, bodies, variants).
pub fn url_tag(
    namespace: &str,
    path: &str,
    query: Option<&str>,
    ignore_params: &[String],
    only: Option<&[String]>,
) -> u64 {
    tag_id(&format!(
        "url\0{namespace}\0{}",
        normalized_url(path, query, ignore_params, only)
    ))
}

/// The implicit tag of every entry stored for one user.
pub fn user_tag(user: &UserId) -> u64 {
    tag_id(&format!("user\0{}", hex(&user.0)))
}

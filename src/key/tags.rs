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

/// Where a tag prefix may end for `tag_prefix` invalidation: after one of these.
pub const TAG_PREFIX_ENDS: &[char] = &[':', '/', '.', '-', '_', '='];

/// The id standing for every tag that starts with `prefix` (a prefix ending in one of
/// [`TAG_PREFIX_ENDS`]): each entry also carries the ids of its tags' prefixes, so
/// invalidating a tag prefix costs what one tag costs.
///
/// ```
/// use larder::key::{tag_prefix_id, tag_prefix_ids};
/// assert_eq!(tag_prefix_ids("job:42:step"), vec![tag_prefix_id("job:"), tag_prefix_id("job:42:")]);
/// assert!(tag_prefix_ids("plain").is_empty());
/// ```
pub fn tag_prefix_id(prefix: &str) -> u64 {
    tag_id(&format!("tag-prefix\0{prefix}"))
}

/// The prefix ids of one tag (see [`tag_prefix_id`]), at most eight.
pub fn tag_prefix_ids(tag: &str) -> Vec<u64> {
    tag.char_indices()
        .filter(|(_, c)| TAG_PREFIX_ENDS.contains(c))
        .take(8)
        .map(|(i, c)| tag_prefix_id(&tag[..i + c.len_utf8()]))
        .collect()
}

/// The id standing for every entry whose path starts with `prefix` (a prefix ending in
/// `/`, below the root): each entry carries the ids of its path's directories, so a URL
/// prefix invalidation costs what its entries cost, not a walk of everything.
///
/// ```
/// use larder::key::{path_prefix_id, path_prefix_ids};
/// assert_eq!(
///     path_prefix_ids("/videos/7/comments?page=2"),
///     vec![path_prefix_id("/videos/"), path_prefix_id("/videos/7/")]
/// );
/// assert!(path_prefix_ids("/top").is_empty());
/// ```
pub fn path_prefix_id(prefix: &str) -> u64 {
    tag_id(&format!("path-prefix\0{prefix}"))
}

/// The directory ids of one normalised URL (see [`path_prefix_id`]), at most eight.
pub fn path_prefix_ids(url: &str) -> Vec<u64> {
    let path = url.split('?').next().unwrap_or("");
    path.char_indices()
        .filter(|&(i, c)| c == '/' && i > 0)
        .take(8)
        .map(|(i, _)| path_prefix_id(&path[..=i]))
        .collect()
}

/// Whether `path` matches a glob where `*` is one segment's characters (no `/`) and `**`
/// any number of segments (`/videos/*/comments`, `/files/**`). The query is not part of it.
///
/// ```
/// use larder::key::glob_matches;
/// assert!(glob_matches("/videos/*/comments", "/videos/7/comments?page=2"));
/// assert!(!glob_matches("/videos/*/comments", "/videos/7/8/comments"));
/// assert!(glob_matches("/videos/**/comments", "/videos/7/8/comments"));
/// assert!(glob_matches("/files/**", "/files/a/b.txt"));
/// assert!(glob_matches("/v*s/x", "/videos/x"));
/// assert!(!glob_matches("/videos/*", "/videos/7/comments"));
/// ```
pub fn glob_matches(glob: &str, url: &str) -> bool {
    let path = url.split('?').next().unwrap_or("");
    glob_at(glob.as_bytes(), path.as_bytes())
}

fn glob_at(g: &[u8], p: &[u8]) -> bool {
    match g {
        [] => p.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `**/` may also stand for no segment at all.
            let rest_after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=p.len()).any(|i| glob_at(rest, &p[i..]))
                || (rest.first() == Some(&b'/') && glob_at(rest_after_slash, p))
        }
        [b'*', rest @ ..] => {
            let seg = p.iter().position(|&b| b == b'/').unwrap_or(p.len());
            (0..=seg).any(|i| glob_at(rest, &p[i..]))
        }
        [c, rest @ ..] => p.first() == Some(c) && glob_at(rest, &p[1..]),
    }
}

/// The literal directory a glob starts with (up to its last `/` before the first `*`).
pub fn glob_directory(glob: &str) -> &str {
    let literal = &glob[..glob.find('*').unwrap_or(glob.len())];
    &literal[..literal.rfind('/').map_or(0, |i| i + 1)]
}

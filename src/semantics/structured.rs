//! Structured Field Values (RFC 8941): just enough to tell whether a targeted
//! cache-control field (RFC 9213) is a valid Dictionary, since an invalid one is ignored
//! as a whole.

use super::lists::split_list;

/// Whether `text` is a valid Structured Fields Dictionary (RFC 8941 §3.2), as targeted
/// cache-control fields must be; an invalid one is ignored as a whole.
pub fn valid_sf_dictionary(text: &str) -> bool {
    split_list(text).all(|member| valid_sf_member(member.trim()))
}

fn valid_sf_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'*')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
}

fn valid_sf_bare_item(v: &str) -> bool {
    let bytes = v.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'"') => {
            // A quoted string of printable ASCII with only \" and \\ escapes.
            let inner = &bytes[1..];
            let mut escaped = false;
            for (i, &c) in inner.iter().enumerate() {
                if escaped {
                    if c != b'"' && c != b'\\' {
                        return false;
                    }
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    return i == inner.len() - 1;
                } else if !(0x20..0x7f).contains(&c) {
                    return false;
                }
            }
            false
        }
        Some(b'?') => v == "?0" || v == "?1",
        Some(b':') => {
            v.len() >= 2
                && v.ends_with(':')
                && v[1..v.len() - 1]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let digits = v.strip_prefix('-').unwrap_or(v);
            let (int, frac) = match digits.split_once('.') {
                Some((i, f)) => (i, Some(f)),
                None => (digits, None),
            };
            !int.is_empty()
                && int.bytes().all(|c| c.is_ascii_digit())
                && match frac {
                    None => int.len() <= 15,
                    Some(f) => {
                        int.len() <= 12
                            && !f.is_empty()
                            && f.len() <= 3
                            && f.bytes().all(|c| c.is_ascii_digit())
                    }
                }
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)),
        _ => false,
    }
}

fn valid_sf_params(mut rest: &str) -> bool {
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let end = r.find(';').unwrap_or(r.len());
        let (param, next) = r.split_at(end);
        let ok = match param.split_once('=') {
            Some((k, v)) => valid_sf_key(k) && valid_sf_bare_item(v),
            None => valid_sf_key(param),
        };
        if !ok {
            return false;
        }
        rest = next;
    }
    rest.is_empty()
}

fn valid_sf_member(member: &str) -> bool {
    let key_end = member.find(['=', ';']).unwrap_or(member.len());
    let (key, rest) = member.split_at(key_end);
    if !valid_sf_key(key) {
        return false;
    }
    match rest.strip_prefix('=') {
        None => valid_sf_params(rest),
        Some(value) if value.starts_with('(') => value.contains(')'),
        Some(value) => {
            // The item, then its parameters (a ';' inside a string is part of the string).
            let item_end = if let Some(rest) = value.strip_prefix('"') {
                rest.find('"').map_or(value.len(), |i| i + 2)
            } else {
                value.find(';').unwrap_or(value.len())
            };
            let (item, params) = value.split_at(item_end.min(value.len()));
            valid_sf_bare_item(item) && valid_sf_params(params)
        }
    }
}

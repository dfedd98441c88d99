//! The environment in config values: `${VAR}` and `${VAR:-default}`.

use toml::de::DeValue;

/// Expands `${VAR}` and `${VAR:-default}` (the default also when `VAR` is empty); `$$` is a
/// literal `$`. An unset variable without a default is an error naming it.
///
/// ```
/// # use larder::config::expand_env;
/// std::env::set_var("LARDER_DOC_PORT", "6380");
/// assert_eq!(expand_env("redis://h:${LARDER_DOC_PORT}/0").unwrap(), "redis://h:6380/0");
/// assert_eq!(expand_env("${LARDER_DOC_UNSET:-5m}").unwrap(), "5m");
/// assert_eq!(expand_env("cost $$5").unwrap(), "cost $5");
/// assert!(expand_env("${LARDER_DOC_UNSET}").unwrap_err().contains("LARDER_DOC_UNSET"));
/// ```
pub fn expand_env(text: &str) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(format!("{:?} is not an environment variable name", name));
            }
            match (std::env::var(name), default) {
                (Ok(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ))
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `text` refers to an environment variable.
pub(super) fn has_env(text: &str) -> bool {
    !names_in(text).is_empty()
}

/// The environment variables `text` refers to, in order.
pub(super) fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else { break };
            let inner = &r[..end];
            let name = inner.split_once(":-").map_or(inner, |(n, _)| n);
            out.push(name.to_string());
            rest = &r[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// The environment variables a value (a string, or a list of them) refers to.
pub(super) fn env_names(v: &DeValue<'_>) -> Vec<String> {
    match v {
        DeValue::String(s) => names_in(s),
        DeValue::Array(items) => items.iter().flat_map(|i| env_names(i.get_ref())).collect(),
        _ => Vec::new(),
    }
}

//! Parsing of the human units used in the config: durations (`"500ms"`, `"30s"`, `"7d"`)
//! and sizes (`"1KiB"`, `"256MiB"`).
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(larder::units::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
//! assert_eq!(larder::units::parse_size("256MiB"), Ok(256 * 1024 * 1024));
//! ```

use std::time::Duration;

/// The number at the start of `s` and what follows it; `what` names the unit kind in
/// errors.
fn leading_number<'a>(s: &'a str, text: &str, what: &str) -> Result<(u128, &'a str), String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "invalid {what} {text:?}; expected a number followed by a unit"
        ));
    }
    let n = s[..digits]
        .parse()
        .map_err(|_| format!("number too large in {what} {text:?}"))?;
    Ok((n, &s[digits..]))
}

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"72h"`, `"7d"` or `"1h30m"`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`. A bare `"0"` is zero.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(larder::units::parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert!(larder::units::parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; expected e.g. \"30s\", \"5m\", \"7d\"".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let (n, after) = leading_number(rest, text, "duration")?;
        rest = after;
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms_per: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "duration {text:?} has no unit; write e.g. \"{n}s\" (units: ms, s, m, h, d)"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {text:?} (units: ms, s, m, h, d)"
                ))
            }
        };
        total = total.saturating_add(n.saturating_mul(ms_per));
    }
    // RFC 9111's largest delta-seconds (about 68 years) bounds every duration.
    if total > 2_147_483_648_000 {
        return Err(format!(
            "duration {text:?} is too large (at most about 68 years)"
        ));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Parses a size such as `"512"`, `"1KiB"`, `"8MiB"`, `"2GiB"` (also `KB`, `MB`, `GB` as
/// powers of 1000, and `B`).
///
/// ```
/// assert_eq!(larder::units::parse_size("1KiB"), Ok(1024));
/// assert_eq!(larder::units::parse_size("2MB"), Ok(2_000_000));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let (n, unit) = leading_number(s, text, "size")?;
    let n = u64::try_from(n).map_err(|_| format!("number too large in size {text:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in size {text:?} (units: B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a duration the way the config writes it (`"90s"`, `"5m"`, `"250ms"`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(larder::units::format_duration(Duration::from_secs(300)), "5m");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Formats a byte count with binary units (`"1KiB"`, `"256MiB"`).
///
/// ```
/// assert_eq!(larder::units::format_size(8 * 1024 * 1024), "8MiB");
/// ```
pub fn format_size(n: u64) -> String {
    for (unit, per) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= per && n.is_multiple_of(per) {
            return format!("{}{unit}", n / per);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("30x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("213503982334d").is_err());
        assert!(parse_duration("99999999999999999999999999999999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("8XB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}

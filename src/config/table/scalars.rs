//! Scalars: strings, booleans, integers, numbers, durations, sizes and addresses, each
//! possibly from the environment (typed after expansion).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::env::{expand_env, has_env};
use super::{ConfigError, Table, Text};
use crate::units::{format_size, parse_duration, parse_size};

impl Table<'_> {
    /// A string value (environment references expanded).
    pub fn text(&mut self, key: &str) -> Result<Option<Text>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::String(s) => {
                let at = v.span().start;
                let value = expand_env(s).map_err(|m| self.error(at, key, m))?;
                let env = super::env_in(v);
                Ok(Some(Text { value, at, env }))
            }
            _ => Err(self.wrong_type(key, v, "a string")),
        }
    }

    /// A string parsed by `parse`; `default` when absent.
    pub fn parsed<T>(
        &mut self,
        key: &str,
        default: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let text = match self.text(key)? {
            Some(t) => t,
            None => match default {
                Some(d) => Text {
                    value: d.to_string(),
                    at: self.at,
                    env: None,
                },
                None => return Ok(None),
            },
        };
        let value = parse(&text.value).map_err(|m| self.error(text.at, key, text.why(m)))?;
        self.show(key, text.value);
        Ok(Some(value))
    }

    /// A string; `default` when absent.
    pub fn string(&mut self, key: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self
            .parsed(key, Some(default), |s| Ok(s.to_string()))?
            .unwrap_or_default())
    }

    /// A boolean; `default` when absent.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let value = match self.raw(key) {
            None => default,
            Some(v) => self.bool_value(key, v)?,
        };
        self.show(key, value.to_string());
        Ok(value)
    }

    /// A boolean, or `None` when absent.
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let b = self.bool_value(key, v)?;
        self.show(key, b.to_string());
        Ok(Some(b))
    }

    /// An integer in `range`; `default` when absent.
    pub fn int(
        &mut self,
        key: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let value = self.opt_int(key, range)?.unwrap_or(default);
        self.show(key, value.to_string());
        Ok(value)
    }

    /// An integer in `range`, or `None` when absent.
    pub fn opt_int(
        &mut self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let n = self.int_value(key, v)?;
        if !range.contains(&n) {
            let message = if *range.end() == i64::MAX {
                format!("must be at least {}", range.start())
            } else {
                format!("must be between {} and {}", range.start(), range.end())
            };
            return Err(self.error(v.span().start, key, message));
        }
        self.show(key, n.to_string());
        Ok(Some(n))
    }

    fn bool_value(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<bool, ConfigError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            DeValue::String(s) if has_env(s) => {
                self.typed_from_env(key, v, "a boolean", |t| match t {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                })
            }
            _ => Err(self.wrong_type(key, v, "a boolean")),
        }
    }

    pub(super) fn int_value(
        &self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
    ) -> Result<i64, ConfigError> {
        match v.get_ref() {
            DeValue::String(s) if has_env(s) => {
                self.typed_from_env(key, v, "an integer", |t| t.replace('_', "").parse().ok())
            }
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                let (neg, digits) = match digits.strip_prefix('-') {
                    Some(d) => (true, d.to_string()),
                    None => (false, digits.trim_start_matches('+').to_string()),
                };
                let digits = digits
                    .strip_prefix("0x")
                    .or_else(|| digits.strip_prefix("0o"))
                    .or_else(|| digits.strip_prefix("0b"))
                    .unwrap_or(&digits);
                let n = i64::from_str_radix(digits, i.radix())
                    .map_err(|_| self.error(v.span().start, key, "number out of range"))?;
                Ok(if neg { -n } else { n })
            }
            _ => Err(self.wrong_type(key, v, "an integer")),
        }
    }

    /// A number (integer or float), or `None` when absent.
    pub fn opt_float(
        &mut self,
        key: &str,
        valid: impl Fn(f64) -> bool,
        message: &str,
    ) -> Result<Option<f64>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let x = match v.get_ref() {
            DeValue::Float(f) => f
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .map_err(|_| self.error(v.span().start, key, "not a number"))?,
            DeValue::Integer(_) => self.int_value(key, v)? as f64,
            DeValue::String(s) if has_env(s) => {
                self.typed_from_env(key, v, "a number", |t| t.parse::<f64>().ok())?
            }
            _ => return Err(self.wrong_type(key, v, "a number")),
        };
        if !valid(x) {
            return Err(self.error(v.span().start, key, message));
        }
        self.show(key, x.to_string());
        Ok(Some(x))
    }

    /// A duration such as `"30s"`; `default` when absent.
    pub fn duration(&mut self, key: &str, default: &str) -> Result<Duration, ConfigError> {
        Ok(self
            .parsed(key, Some(default), parse_duration)?
            .unwrap_or_default())
    }

    /// A duration greater than zero; `default` when absent.
    pub fn positive_duration(&mut self, key: &str, default: &str) -> Result<Duration, ConfigError> {
        Ok(self
            .parsed(key, Some(default), |s| {
                parse_duration(s).and_then(|d| {
                    if d.is_zero() {
                        Err("must be greater than zero".into())
                    } else {
                        Ok(d)
                    }
                })
            })?
            .unwrap_or_default())
    }

    /// A duration greater than zero, or `None` when absent.
    pub fn opt_positive_duration(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.parsed(key, None, |s| {
            parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be greater than zero".into())
                } else {
                    Ok(d)
                }
            })
        })
    }

    /// A size such as `"8MiB"` within `range`; `default` when absent.
    pub fn size(
        &mut self,
        key: &str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let value = self
            .parsed(key, Some(&format_size(default)), |s| {
                let n = parse_size(s)?;
                if range.contains(&n) {
                    Ok(n)
                } else if *range.end() == u64::MAX {
                    Err(format!("must be at least {}", format_size(*range.start())))
                } else {
                    Err(format!(
                        "must be between {} and {}",
                        format_size(*range.start()),
                        format_size(*range.end())
                    ))
                }
            })?
            .unwrap_or(default);
        Ok(value)
    }

    /// A listen address; `default` when absent.
    pub fn addr(&mut self, key: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        Ok(self
            .parsed(key, Some(default), |s| {
                s.parse().map_err(|_| {
                    format!("{s:?} is not a listen address; expected IP:PORT such as \"127.0.0.1:8080\"")
                })
            })?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))))
    }

    /// A value given as `${VAR}` text where another type is wanted: expanded, then read by
    /// `parse`; a wrong type names the variable.
    fn typed_from_env<T>(
        &self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let DeValue::String(s) = v.get_ref() else {
            return Err(self.wrong_type(key, v, expected));
        };
        let at = v.span().start;
        let text = expand_env(s).map_err(|m| self.error(at, key, m))?;
        parse(text.trim()).ok_or_else(|| {
            let names = super::env::names_in(s).join(", ");
            self.error(
                at,
                key,
                format!("environment variable {names} gives {text:?}, expected {expected}"),
            )
        })
    }
}

//! Reading one TOML table: every key is read once, by name, with its default and its
//! validation, and that same call records the value `larder check` prints and reload
//! compares. Keys nobody read are errors (a typo must not silently disable caching).
//!
//! String values may hold `${VAR}` or `${VAR:-default}`, taken from the environment when
//! the file is read.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::source::{ConfigError, Source};
use crate::units::{format_size, parse_duration, parse_size};

/// Whether a running process applies a change of a key on reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Applied by a reload.
    Live,
    /// Only after a restart (listeners, the upstream client, the stores).
    Restart,
}

/// A key a table accepts, and whether a reload can change it.
pub type Key = (&'static str, Reload);

/// One setting as read: its dotted name and its value as `larder check` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Dotted name, e.g. `proxy.listen`.
    pub key: String,
    /// The value as printed (secrets masked).
    pub shown: String,
    /// Whether a reload can change it.
    pub reload: Reload,
}

/// A table being read.
pub(crate) struct Table<'a> {
    src: &'a Source<'a>,
    /// Dotted path of the table, e.g. `proxy`, `rule[2]`.
    pub path: String,
    entries: Vec<(&'a Spanned<DeString<'a>>, &'a Spanned<DeValue<'a>>)>,
    /// Where the table starts (for errors about what it lacks).
    pub at: usize,
    used: Vec<usize>,
    settings: Vec<Setting>,
}

fn kind(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{}`", i.as_str()),
        DeValue::Float(f) => format!("floating point `{}`", f.as_str()),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(_) => "datetime".into(),
        DeValue::Array(_) => "sequence".into(),
        DeValue::Table(_) => "map".into(),
    }
}

/// A value that is a string (`${VAR}` expanded), with where it is.
pub(crate) struct Text {
    pub value: String,
    pub at: usize,
}

impl<'a> Table<'a> {
    /// The table `table` at `at`, named `path` in errors.
    pub fn new(
        src: &'a Source<'a>,
        path: impl Into<String>,
        table: Option<&'a DeTable<'a>>,
        at: usize,
    ) -> Table<'a> {
        Table {
            src,
            path: path.into(),
            entries: table.map(|t| t.iter().collect()).unwrap_or_default(),
            at,
            used: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// The dotted name of `key` in this table (the table's own name for `""`).
    pub fn field(&self, key: &str) -> String {
        match (self.path.is_empty(), key.is_empty()) {
            (true, _) => key.to_string(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{key}", self.path),
        }
    }

    /// An error at byte `at` about `key`.
    pub fn error(&self, at: usize, key: &str, message: impl Into<String>) -> ConfigError {
        self.src.error(at, self.field(key), message)
    }

    /// The raw value of `key`, marked as read.
    pub fn raw(&mut self, key: &str) -> Option<&'a Spanned<DeValue<'a>>> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.get_ref().as_ref() == key)?;
        self.used.push(i);
        Some(self.entries[i].1)
    }

    /// Records what `larder check` prints for `key` (a URL's password masked).
    pub fn show(&mut self, key: &str, shown: impl Into<String>) {
        let key = self.field(key);
        let shown: String = shown.into();
        let shown = if shown.contains("://") && shown.contains('@') {
            super::mask_password(&shown)
        } else {
            shown
        };
        self.settings.push(Setting {
            key,
            shown,
            reload: Reload::Live,
        });
    }

    fn wrong_type(&self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) -> ConfigError {
        self.error(
            v.span().start,
            key,
            format!("invalid type: {}, expected {expected}", kind(v.get_ref())),
        )
    }

    /// A string value (environment references expanded).
    pub fn text(&mut self, key: &str) -> Result<Option<Text>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::String(s) => {
                let at = v.span().start;
                let value = expand_env(s).map_err(|m| self.error(at, key, m))?;
                Ok(Some(Text { value, at }))
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
        let (text, at) = match self.text(key)? {
            Some(t) => (t.value, t.at),
            None => match default {
                Some(d) => (d.to_string(), self.at),
                None => return Ok(None),
            },
        };
        let value = parse(&text).map_err(|m| self.error(at, key, m))?;
        self.show(key, text);
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
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                _ => return Err(self.wrong_type(key, v, "a boolean")),
            },
        };
        self.show(key, value.to_string());
        Ok(value)
    }

    /// A boolean, or `None` when absent.
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Boolean(b) => {
                self.show(key, b.to_string());
                Ok(Some(*b))
            }
            _ => Err(self.wrong_type(key, v, "a boolean")),
        }
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

    fn int_value(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<i64, ConfigError> {
        match v.get_ref() {
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

    /// The items of an array value; `None` when absent.
    fn array(&mut self, key: &str) -> Result<Option<&'a [Spanned<DeValue<'a>>]>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Array(items) => Ok(Some(items.as_ref())),
            _ => Err(self.wrong_type(key, v, "a sequence")),
        }
    }

    /// A list of strings, each with where it is; `None` when absent.
    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<Text>>, ConfigError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("{key}[{i}]");
            out.push(Text {
                value: self.value_text(&field, item)?,
                at: item.span().start,
            });
        }
        let shown: Vec<&str> = out.iter().map(|t| t.value.as_str()).collect();
        self.show(key, format!("[{}]", shown.join(", ")));
        Ok(Some(out))
    }

    /// A list of strings each parsed by `parse`; empty when absent.
    pub fn parsed_list<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let texts = self.strings(key)?.unwrap_or_default();
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(&t.value).map_err(|m| self.error(t.at, &format!("{key}[{i}]"), m)))
            .collect()
    }

    /// A list of integers, each with where it is; `None` when absent.
    pub fn ints(&mut self, key: &str) -> Result<Option<Vec<(i64, usize)>>, ConfigError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok((
                    self.int_value(&format!("{key}[{i}]"), item)?,
                    item.span().start,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A sub-table (`[store.disk]`, an inline table); `None` when absent.
    pub fn table(&mut self, key: &str) -> Result<Option<Table<'a>>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => Ok(Some(Table::new(
                self.src,
                self.field(key),
                Some(t),
                v.span().start,
            ))),
            _ => Err(self.wrong_type(key, v, "a table")),
        }
    }

    /// An array of tables (`[[rule]]`), each named `key[i]`.
    pub fn tables(&mut self, key: &str) -> Result<Vec<Table<'a>>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(Vec::new());
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.wrong_type(key, v, "an array of tables"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.get_ref() {
                DeValue::Table(t) => Ok(Table::new(
                    self.src,
                    format!("{}[{i}]", self.field(key)),
                    Some(t),
                    item.span().start,
                )),
                _ => Err(self.wrong_type(&format!("{key}[{i}]"), item, "a table")),
            })
            .collect()
    }

    /// The names of keys present but not read (to reject typos).
    fn unknown(&self) -> Option<(&'a Spanned<DeString<'a>>, usize)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(i, _)| !self.used.contains(i))
            .map(|(i, (k, _))| (*k, i))
    }

    /// Ends reading: a key nobody read is an error naming the keys this table has; each
    /// setting learns whether a reload can change it.
    pub fn finish(self, known: &[Key]) -> Result<Vec<Setting>, ConfigError> {
        if let Some((k, _)) = self.unknown() {
            let expected: Vec<String> = known.iter().map(|(n, _)| format!("`{n}`")).collect();
            return Err(self.src.error(
                k.span().start,
                self.field(k.get_ref()),
                format!(
                    "unknown field `{}`, expected one of {}",
                    k.get_ref(),
                    expected.join(", ")
                ),
            ));
        }
        let mut settings = self.settings;
        for s in &mut settings {
            let name = s.key.rsplit('.').next().unwrap_or("");
            if let Some((_, reload)) = known.iter().find(|(n, _)| *n == name) {
                s.reload = *reload;
            }
        }
        Ok(settings)
    }

    /// The keys present in this table, in order (for sections that take free-form keys).
    pub fn keys(&mut self) -> Vec<(String, &'a Spanned<DeValue<'a>>, usize)> {
        let all: Vec<_> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.get_ref().to_string(), *v, k.span().start, i))
            .collect();
        self.used.extend(all.iter().map(|e| e.3));
        all.into_iter().map(|(k, v, at, _)| (k, v, at)).collect()
    }

    /// A value's text, if it is a string (environment references expanded).
    pub fn value_text(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<String, ConfigError> {
        match v.get_ref() {
            DeValue::String(s) => expand_env(s).map_err(|m| self.error(v.span().start, key, m)),
            _ => Err(self.wrong_type(key, v, "a string")),
        }
    }
}

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

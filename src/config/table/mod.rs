//! Reading one TOML table: every key is read once, by name, with its default and its
//! validation, and that same call records the value `larder check` prints and reload
//! compares. Keys nobody read are errors (a typo must not silently disable caching).
//!
//! Any scalar may come from the environment: a string value holding `${VAR}` or
//! `${VAR:-default}` is expanded when the file is read, and a boolean, an integer, a
//! number, a duration, a size or a list item given that way is typed after expansion (a
//! wrong type names the variable, the field and where it is). `larder check` marks each
//! value that came from the environment.

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::source::{ConfigError, Source};

mod env;
mod lists;
mod scalars;

use env::env_names;
pub use env::expand_env;

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
    /// The environment variables its value came from, if any.
    pub env: Vec<String>,
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
    /// Keys whose value names environment variables, with their names.
    env: Vec<(String, Vec<String>)>,
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
    /// The environment variables it was read from (`None`: written in the file).
    pub env: Option<String>,
}

impl Text {
    /// `message` about this value, naming the variables it came from.
    pub fn why(&self, message: String) -> String {
        match &self.env {
            Some(names) => format!(
                "environment variable {names} gives {:?}: {message}",
                self.value
            ),
            None => message,
        }
    }
}

/// The variables a string value reads, if any (for [`Text::env`]).
fn env_in(v: &Spanned<DeValue<'_>>) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) if env::has_env(s) => Some(env::names_in(s).join(", ")),
        _ => None,
    }
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
            env: Vec::new(),
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

    /// Where the value of `key` starts (for an error about it), without marking it read.
    pub fn span_of(&self, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v.span().start)
    }

    /// The raw value of `key`, marked as read.
    pub fn raw(&mut self, key: &str) -> Option<&'a Spanned<DeValue<'a>>> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.get_ref().as_ref() == key)?;
        self.used.push(i);
        let value = self.entries[i].1;
        let names = env_names(value.get_ref());
        if !names.is_empty() {
            self.env.push((key.to_string(), names));
        }
        Some(value)
    }

    /// Records what `larder check` prints for `key` (a URL's password masked).
    pub fn show(&mut self, key: &str, shown: impl Into<String>) {
        let env = self
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, names)| names.clone())
            .unwrap_or_default();
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
            env,
        });
    }

    pub(super) fn wrong_type(
        &self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        expected: &str,
    ) -> ConfigError {
        self.error(
            v.span().start,
            key,
            format!("invalid type: {}, expected {expected}", kind(v.get_ref())),
        )
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

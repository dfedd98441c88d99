//! Lists: strings (each possibly from the environment), integers, parsed items.

use toml::de::DeValue;
use toml::Spanned;

use super::{ConfigError, Table, Text};

impl<'a> Table<'a> {
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
                env: super::env_in(item),
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
            .map(|(i, t)| {
                parse(&t.value).map_err(|m| self.error(t.at, &format!("{key}[{i}]"), t.why(m)))
            })
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
}

//! Where a config value sits: byte offsets turned into `file:line:col` errors.

use std::path::Path;

pub use crate::error::ConfigError;

/// The config text and its file name, for errors.
pub(crate) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// `offset` clamped into the text and down to a character boundary.
    fn boundary(&self, offset: usize) -> usize {
        let mut o = offset.min(self.text.len());
        while !self.text.is_char_boundary(o) {
            o -= 1;
        }
        o
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// An error at byte `offset`.
    pub fn error(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = self.line_col(offset);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error for the whole file (it could not be read).
    pub fn unreadable(file: &Path, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            field: "(file)".into(),
            message,
        }
    }

    /// Best effort: the dotted field path of the key at `offset`, from the table headers
    /// above it and the key on its line (for the TOML parser's own errors).
    pub fn field_at(&self, offset: usize) -> String {
        let offset = self.boundary(offset);
        let mut table = String::new();
        let mut rule_count: usize = 0;
        let mut key = String::new();
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let mut start = 0;
        for line in self.text.split_inclusive('\n') {
            if start > line_start {
                break;
            }
            start += line.len();
            let t = line.trim();
            if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim();
                if name == "rule" {
                    table = format!("rule[{rule_count}]");
                    rule_count += 1;
                } else {
                    table = name.to_string();
                }
                key.clear();
            } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = name.trim().to_string();
                key.clear();
            } else if let Some(eq) = t.find('=') {
                let k = t[..eq].trim();
                if !k.is_empty() && !k.starts_with('#') {
                    key = k.trim_matches('"').to_string();
                }
            }
        }
        match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".into(),
            (true, false) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

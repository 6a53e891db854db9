//! TOML → raw tree. Uses `DeTable` (not serde derive) because it keeps the
//! span of every key and value, and so every error can name its line.
//! Syntax errors are returned alone (`Err`); schema checks need a whole tree.

use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::{LineIndex, RawDoc, RawOption, RawSection, RawValue, Syntax};
use super::validate::{KINDS, MULTI_KINDS, NAMED_KINDS};
use super::ConfigError;

pub(crate) fn read(file: &Path, text: &str) -> Result<RawDoc, Vec<ConfigError>> {
    let lines = LineIndex::new(text);
    let err =
        |line: usize, key: &str, message: String| ConfigError { file: file.to_path_buf(), line, key: key.to_string(), message };
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // The recovered tree may be missing pieces; validating it would only
        // add confusing follow-on errors.
        return Err(syntax_errors
            .iter()
            .map(|e| err(e.span().map_or(0, |s| lines.line(s.start)), "syntax", e.message().to_string()))
            .collect());
    }

    let mut errors = Vec::new();
    let mut sections = Vec::new();
    for (key, value) in root.get_ref().iter() {
        let kind = key.get_ref().as_ref();
        let line = lines.line(key.span().start);
        let section = |name: Option<String>, line: usize, table| RawSection {
            kind: kind.to_string(),
            name,
            line,
            options: options(table, &lines),
        };
        match value.get_ref() {
            DeValue::Table(t) if NAMED_KINDS.contains(&kind) => {
                for (name, sub) in t.iter() {
                    let name_line = lines.line(name.span().start);
                    match sub.get_ref() {
                        DeValue::Table(st) => sections.push(section(Some(name.get_ref().to_string()), name_line, st)),
                        _ => errors.push(err(
                            name_line,
                            &format!("{kind}.{}", name.get_ref()),
                            format!("expected a [{kind}.NAME] table, found {}", type_name(sub.get_ref())),
                        )),
                    }
                }
            }
            DeValue::Table(_) if MULTI_KINDS.contains(&kind) => {
                errors.push(err(line, kind, format!("expected [[{kind}]] entries, found a single [{kind}] table")))
            }
            DeValue::Table(t) => sections.push(section(None, line, t)),
            DeValue::Array(a) if a.iter().all(|v| v.get_ref().is_table()) && !a.is_empty() => {
                if !MULTI_KINDS.contains(&kind) && KINDS.contains(&kind) {
                    errors.push(err(line, kind, format!("expected one [{kind}] table, found [[{kind}]] entries")));
                    continue;
                }
                for item in a.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        sections.push(section(None, lines.line(item.span().start), t));
                    }
                }
            }
            v if KINDS.contains(&kind) => {
                errors.push(err(line, kind, format!("expected a [{kind}] section, found {}", type_name(v))))
            }
            _ => errors.push(err(line, kind, "unknown key".to_string())),
        }
    }
    // Shape errors (e.g. `[device]` instead of `[[device]]`) are not fatal:
    // the validator adds them to its own so all are reported at once.
    Ok(RawDoc { syntax: Syntax::Toml, sections, errors })
}

fn options(table: &DeTable<'_>, lines: &LineIndex) -> Vec<RawOption> {
    table
        .iter()
        .map(|(k, v)| RawOption { key: k.get_ref().to_string(), line: lines.line(k.span().start), value: value(v, lines) })
        .collect()
}

fn value(v: &Spanned<DeValue<'_>>, lines: &LineIndex) -> RawValue {
    match v.get_ref() {
        DeValue::String(s) => RawValue::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => RawValue::Int(n),
            Err(_) => RawValue::Other("an integer out of range"),
        },
        DeValue::Boolean(b) => RawValue::Bool(*b),
        DeValue::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            for item in a.iter() {
                match item.get_ref() {
                    DeValue::String(s) => items.push((s.to_string(), lines.line(item.span().start))),
                    _ => return RawValue::Other("a list with non-string items"),
                }
            }
            RawValue::List(items)
        }
        other => RawValue::Other(type_name(other)),
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

//! OpenWrt UCI syntax → raw tree:
//!
//! ```text
//! config profile 'iot'
//!     option unlisted 'block'
//!     list deny 'telemetry'
//! ```
//!
//! Values may be single-quoted (literal), double-quoted (backslash escapes)
//! or bare words; adjacent pieces join as in the shell (`'it'\''s'`).
//! Malformed lines are returned alone (`Err`), like TOML syntax errors.

use std::path::Path;

use super::raw::{RawDoc, RawOption, RawSection, RawValue, Syntax};
use super::ConfigError;

pub(crate) fn read(file: &Path, text: &str) -> Result<RawDoc, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut sections: Vec<RawSection> = Vec::new();
    for (i, raw_line) in text.lines().enumerate() {
        let line = i + 1;
        let mut err =
            |message: String| errors.push(ConfigError { file: file.to_path_buf(), line, key: "syntax".to_string(), message });
        let words = match tokenize(raw_line) {
            Ok(w) => w,
            Err(e) => {
                err(e.to_string());
                continue;
            }
        };
        let Some((stmt, args)) = words.split_first() else { continue };
        match stmt.as_str() {
            // `package NAME` is legal UCI (from `uci export`); it names the file.
            "package" if args.len() == 1 => {}
            "config" => match args {
                [kind] | [kind, _] if is_ident(kind) => {
                    sections.push(RawSection { kind: kind.clone(), name: args.get(1).cloned(), line, options: Vec::new() })
                }
                [kind, ..] if !is_ident(kind) => err(format!("bad section type {kind:?}")),
                [] => err("`config` needs a section type".to_string()),
                _ => err("too many words after `config TYPE 'NAME'`".to_string()),
            },
            "option" | "list" => {
                let Some(section) = sections.last_mut() else {
                    err(format!("`{stmt}` outside a `config` section"));
                    continue;
                };
                match args {
                    [key, value] if is_ident(key) => add(section, stmt == "list", key, value, line),
                    [key, ..] if !is_ident(key) => err(format!("bad option name {key:?}")),
                    [] | [_] => err(format!("`{stmt}` needs a name and a value")),
                    _ => err(format!("too many words after `{stmt} NAME 'VALUE'` (quote values with spaces)")),
                }
            }
            other => err(format!("unknown statement {other:?} (want config, option or list)")),
        }
    }
    if errors.is_empty() {
        Ok(RawDoc { syntax: Syntax::Uci, sections, errors })
    } else {
        Err(errors)
    }
}

fn add(section: &mut RawSection, is_list: bool, key: &str, value: &str, line: usize) {
    if is_list {
        // `list` lines accumulate; a preceding `option` of the same name
        // becomes the first item (libuci does the same).
        if let Some(opt) = section.options.iter_mut().rev().find(|o| o.key == key) {
            match &mut opt.value {
                RawValue::List(items) => {
                    items.push((value.to_string(), line));
                    return;
                }
                RawValue::Str(s) => {
                    let first = (std::mem::take(s), opt.line);
                    opt.value = RawValue::List(vec![first, (value.to_string(), line)]);
                    return;
                }
                _ => {}
            }
        }
        section.options.push(RawOption { key: key.to_string(), line, value: RawValue::List(vec![(value.to_string(), line)]) });
    } else {
        // A repeated `option` is kept as a second entry so the validator
        // reports it rather than one value silently winning.
        section.options.push(RawOption { key: key.to_string(), line, value: RawValue::Str(value.to_string()) });
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits one line into shell-like words; `#` at the start of a word begins
/// a comment.
fn tokenize(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(out),
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '\'' => loop {
                    match chars.next() {
                        None => return Err("unterminated single quote"),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        None => return Err("unterminated double quote"),
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or("unterminated double quote")?),
                        Some(c) => word.push(c),
                    }
                },
                '\\' => word.push(chars.next().ok_or("backslash at end of line")?),
                c => word.push(c),
            }
        }
        out.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        tokenize(s).unwrap()
    }

    #[test]
    fn tokenizes_quotes_and_comments() {
        assert_eq!(words("  option  mode 'enforce' # c"), ["option", "mode", "enforce"]);
        assert_eq!(words("\tlist lan \"br lan\""), ["list", "lan", "br lan"]);
        assert_eq!(words("option x bare"), ["option", "x", "bare"]);
        assert_eq!(words("option x 'it'\\''s'"), ["option", "x", "it's"]);
        assert_eq!(words(r#"option x "a\"b""#), ["option", "x", "a\"b"]);
        assert_eq!(words("option x ''"), ["option", "x", ""]);
        assert_eq!(words("option x 'a#b'"), ["option", "x", "a#b"]);
        assert!(words("# only a comment").is_empty());
        assert!(words("   ").is_empty());
        assert_eq!(tokenize("option x 'abc"), Err("unterminated single quote"));
        assert_eq!(tokenize("option x \"abc"), Err("unterminated double quote"));
        assert_eq!(tokenize("option x abc\\"), Err("backslash at end of line"));
    }

    #[test]
    fn builds_sections() {
        let doc = read(
            Path::new("x"),
            "package leash\n\nconfig daemon\n\toption mode 'monitor'\n\tlist lan 'a'\n\tlist lan 'b'\nconfig profile 'iot'\n\toption deny 'x'\n\tlist deny 'y'\n",
        )
        .unwrap();
        assert_eq!(doc.sections.len(), 2);
        let d = &doc.sections[0];
        assert_eq!((d.kind.as_str(), d.name.as_deref(), d.line), ("daemon", None, 3));
        assert_eq!(d.options[0].value, RawValue::Str("monitor".into()));
        assert_eq!(d.options[1].value, RawValue::List(vec![("a".into(), 5), ("b".into(), 6)]));
        let p = &doc.sections[1];
        assert_eq!(p.name.as_deref(), Some("iot"));
        assert_eq!(p.options[0].value, RawValue::List(vec![("x".into(), 8), ("y".into(), 9)]));
    }

    #[test]
    fn malformed_lines_all_reported() {
        let e = read(
            Path::new("x"),
            "option mode 'x'\nconfig daemon\n\toption mode 'enforce\n\tfrobnicate x\n\toption mode\n\toption mode a b\nconfig\nconfig a-b\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6, 7, 8]);
        assert!(e[0].message.contains("outside"), "{}", e[0].message);
        assert!(e[1].message.contains("unterminated"));
        assert!(e[2].message.contains("unknown statement"));
    }
}

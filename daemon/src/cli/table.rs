//! Aligned text tables for the CLI (every query also has `--json`).

use serde_json::Value;

/// Left-aligned columns separated by two spaces; no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            if i + 1 < cells.len() {
                l.extend(std::iter::repeat(' ').take(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// A JSON value as a table cell: strings bare, lists joined by commas,
/// null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `key  value` rows for an object (status, explain).
pub fn key_values(v: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    render(&["KEY", "VALUE"], &rows)
}

fn flatten(prefix: &str, v: &Value, rows: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, rows);
            }
        }
        other => rows.push(vec![prefix.to_string(), cell(other)]),
    }
}

/// Seconds since the epoch as `YYYY-MM-DD hh:mm:ss` UTC.
pub fn time(v: &Value) -> String {
    match v.as_u64() {
        Some(t) => {
            let (y, mo, d) = crate::syslog::civil_from_days((t / 86_400) as i64);
            let s = t % 86_400;
            format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = render(&["MAC", "NAME"], &[vec!["aa:bb".into(), "cam".into()], vec!["a".into(), "-".into()]]);
        assert_eq!(t, "MAC    NAME\naa:bb  cam\na      -\n");
    }

    #[test]
    fn cells_and_times() {
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a,b");
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(time(&serde_json::json!(1_795_382_043u64)), "2026-11-22 21:14:03");
        let kv = key_values(&serde_json::json!({"mode": "enforce", "counters": {"alerts": 2}}));
        assert!(kv.contains("counters.alerts  2"), "{kv}");
    }
}

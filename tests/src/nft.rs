//! Reading leash's kernel objects back from `nft -j` (the kernel's view, not
//! the daemon's): set elements as text, tables present or not.

use serde_json::Value;

/// The elements of set `name` in an `nft -j list table ...` document, as
/// nft's text form writes them: `02:00:00:00:07:01`,
/// `02:00:00:00:07:01 . 203.0.113.7`, `10.0.0.0/8`.
pub fn set_elements(doc: &Value, name: &str) -> Vec<String> {
    let Some(items) = doc.get("nftables").and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .filter_map(|i| i.get("set"))
        .filter(|s| s.get("name").and_then(Value::as_str) == Some(name))
        .flat_map(|s| s.get("elem").and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|e| render(&e))
        .collect()
}

/// Names of the sets in the document.
pub fn set_names(doc: &Value) -> Vec<String> {
    let Some(items) = doc.get("nftables").and_then(Value::as_array) else { return Vec::new() };
    items.iter().filter_map(|i| i.get("set")?.get("name")?.as_str().map(str::to_string)).collect()
}

/// One element: a plain value, `{"concat": [...]}`, `{"prefix": ...}`,
/// `{"range": [...]}`, or `{"elem": {"val": ..., "timeout": ...}}` when the
/// element carries a timeout or comment.
pub fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(m) => {
            if let Some(e) = m.get("elem") {
                return render(e.get("val").unwrap_or(&Value::Null));
            }
            if let Some(Value::Array(parts)) = m.get("concat") {
                return parts.iter().map(render).collect::<Vec<_>>().join(" . ");
            }
            if let Some(p) = m.get("prefix") {
                return format!("{}/{}", render(p.get("addr").unwrap_or(&Value::Null)), render(p.get("len").unwrap_or(&Value::Null)));
            }
            if let Some(Value::Array(r)) = m.get("range") {
                return r.iter().map(render).collect::<Vec<_>>().join("-");
            }
            v.to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_concat_and_timeout_elements() {
        let doc: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"inet","name":"leash"}},
            {"set":{"family":"inet","name":"block_v4","table":"leash","type":["ether_addr","ipv4_addr"],
              "elem":[{"elem":{"val":{"concat":["02:00:00:00:07:01","203.0.113.7"]},"timeout":86400,"expires":86399}}]}},
            {"set":{"family":"inet","name":"quarantine_mac","table":"leash","type":"ether_addr","elem":["02:00:00:00:07:01"]}},
            {"set":{"family":"inet","name":"quarantine_v4","table":"leash","type":"ipv4_addr"}}]}"#,
        )
        .unwrap();
        assert_eq!(set_elements(&doc, "block_v4"), ["02:00:00:00:07:01 . 203.0.113.7"]);
        assert_eq!(set_elements(&doc, "quarantine_mac"), ["02:00:00:00:07:01"]);
        assert!(set_elements(&doc, "quarantine_v4").is_empty());
        assert_eq!(set_names(&doc), ["block_v4", "quarantine_mac", "quarantine_v4"]);
    }
}

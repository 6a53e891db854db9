//! What a notifier is given for one alert: one JSON object (pure).

use serde_json::{Map, Value};

use crate::alert::Alert;

/// The alert as one JSON object: `verb`, `time` (Unix seconds), `severity`,
/// `router` (this router's hostname, so that several routers can share one
/// script or broker), `line` (the syslog text, for scripts that only pass
/// it on), and every `key=value` field of the line, values as strings just
/// as logged. The fixed keys win over a field of the same name.
pub fn alert_json(a: &Alert, time: u64, router: &str) -> Map<String, Value> {
    let mut o = Map::new();
    for (k, v) in a.fields() {
        o.insert(k.to_string(), Value::String(v.to_string()));
    }
    o.insert("verb".into(), a.verb.as_str().into());
    o.insert("time".into(), time.into());
    o.insert("severity".into(), a.severity().as_str().into());
    o.insert("router".into(), router.into());
    o.insert("line".into(), a.to_string().into());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Verb;

    #[test]
    fn every_field_and_the_fixed_keys() {
        let a = Alert::new(Verb::Quarantine)
            .field("device", "aa:bb:cc:dd:ee:ff")
            .field("name", "Living Room \"TV\"")
            .field("dport", 443)
            .field("rule", "list:telemetry");
        let o = alert_json(&a, 1_700_000_000, "gw");
        assert_eq!(o["verb"], "QUARANTINE");
        assert_eq!(o["time"], 1_700_000_000u64);
        assert_eq!(o["severity"], "warning");
        assert_eq!(o["router"], "gw");
        assert_eq!(o["device"], "aa:bb:cc:dd:ee:ff");
        assert_eq!(o["name"], "Living Room \"TV\"");
        assert_eq!(o["dport"], "443");
        assert_eq!(o["rule"], "list:telemetry");
        assert_eq!(o["line"], a.to_string());
        assert_eq!(o.len(), 9);
        // One line of JSON, whatever the values hold.
        let text = Value::Object(o).to_string();
        assert!(!text.contains('\n'));
        let back: Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(back["name"], "Living Room \"TV\"");
    }

    #[test]
    fn fixed_keys_win() {
        let a = Alert::new(Verb::Alert).field("time", "x").field("verb", "y");
        let o = alert_json(&a, 5, "r");
        assert_eq!(o["time"], 5);
        assert_eq!(o["verb"], "ALERT");
        assert_eq!(o["severity"], "notice");
    }
}

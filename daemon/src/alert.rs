//! Alert lines (SPEC §5): an upper-case verb, then `key=value` pairs, values
//! with spaces or quotes quoted. Pure: the syslog adapter only sends them.

use std::fmt::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Verb {
    Alert,
    Block,
    Quarantine,
    Release,
    /// Grants and withdrawals alike (`action=grant|revoke`): SPEC §5 has
    /// no verb of its own for a withdrawal.
    Consent,
    Learned,
    WouldBlock,
    WouldQuarantine,
}

/// Syslog severities leash uses (RFC 5424 numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Alert => "ALERT",
            Verb::Block => "BLOCK",
            Verb::Quarantine => "QUARANTINE",
            Verb::Release => "RELEASE",
            Verb::Consent => "CONSENT",
            Verb::Learned => "LEARNED",
            Verb::WouldBlock => "WOULD-BLOCK",
            Verb::WouldQuarantine => "WOULD-QUARANTINE",
        }
    }

    /// block and quarantine at warning, alerts (and what monitor mode would
    /// have done) at notice, the rest at info.
    pub fn severity(self) -> Severity {
        match self {
            Verb::Block | Verb::Quarantine => Severity::Warning,
            Verb::Alert | Verb::WouldBlock | Verb::WouldQuarantine => Severity::Notice,
            _ => Severity::Info,
        }
    }
}

/// One alert line under construction: fields keep their insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub verb: Verb,
    fields: Vec<(&'static str, String)>,
}

impl Alert {
    pub fn new(verb: Verb) -> Alert {
        Alert { verb, fields: Vec::with_capacity(12) }
    }

    /// Adds `key=value`; empty values are left out.
    pub fn field(mut self, key: &'static str, value: impl fmt::Display) -> Alert {
        let v = value.to_string();
        if !v.is_empty() {
            self.fields.push((key, v));
        }
        self
    }

    pub fn opt(self, key: &'static str, value: Option<impl fmt::Display>) -> Alert {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    pub fn severity(&self) -> Severity {
        self.verb.severity()
    }

    /// The `key=value` pairs, in order (for notifiers' JSON).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Err => "err",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb.as_str())?;
        for (k, v) in &self.fields {
            write!(f, " {k}=")?;
            write_value(f, v)?;
        }
        Ok(())
    }
}

fn write_value(f: &mut impl Write, v: &str) -> fmt::Result {
    let needs_quotes = v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
    if !needs_quotes {
        return f.write_str(v);
    }
    f.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_line() {
        let a = Alert::new(Verb::Quarantine)
            .field("device", "aa:bb:cc:dd:ee:ff")
            .field("name", "redmi-note")
            .field("ip", "192.168.1.23")
            .field("dst", "203.0.113.7")
            .field("host", "tracking.example.cn")
            .field("country", "CN")
            .field("asn", 4808)
            .field("proto", "tcp")
            .field("dport", 443)
            .field("rule", "list:telemetry")
            .field("profile", "phone");
        assert_eq!(
            a.to_string(),
            "QUARANTINE device=aa:bb:cc:dd:ee:ff name=redmi-note ip=192.168.1.23 dst=203.0.113.7 \
             host=tracking.example.cn country=CN asn=4808 proto=tcp dport=443 rule=list:telemetry profile=phone"
        );
        assert_eq!(a.severity(), Severity::Warning);
    }

    #[test]
    fn quotes_values_with_spaces_and_skips_empty() {
        let a = Alert::new(Verb::Alert).field("name", "Living Room \"TV\"").field("host", "").opt("asn", None::<u32>);
        assert_eq!(a.to_string(), r#"ALERT name="Living Room \"TV\"""#);
        assert_eq!(a.severity(), Severity::Notice);
        let b = Alert::new(Verb::WouldBlock).field("x", "a\nb");
        assert_eq!(b.to_string(), r#"WOULD-BLOCK x="a\x0ab""#);
        assert_eq!(Verb::Release.severity(), Severity::Info);
    }
}

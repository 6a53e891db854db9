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
    /// A MAC seen for the first time (`action=new`).
    Device,
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

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Alert => "ALERT",
            Verb::Block => "BLOCK",
            Verb::Quarantine => "QUARANTINE",
            Verb::Release => "RELEASE",
            Verb::Consent => "CONSENT",
            Verb::Learned => "LEARNED",
            Verb::Device => "DEVICE",
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
/// The values sit end to end in one string (`fields` holds each key and
/// where its value ends): two allocations a line, not one per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub verb: Verb,
    values: String,
    fields: Vec<(&'static str, u32)>,
}

impl Alert {
    pub fn new(verb: Verb) -> Alert {
        Alert { verb, values: String::with_capacity(160), fields: Vec::with_capacity(12) }
    }

    /// Adds `key=value`; empty values are left out.
    pub fn field(mut self, key: &'static str, value: impl fmt::Display) -> Alert {
        let start = self.values.len();
        // Writing to a String cannot fail.
        let _ = write!(self.values, "{value}");
        if self.values.len() > start {
            self.fields.push((key, self.values.len() as u32));
        }
        self
    }

    /// `field` for a value that is text already: copied, not formatted.
    pub fn text(mut self, key: &'static str, value: &str) -> Alert {
        if !value.is_empty() {
            self.values.push_str(value);
            self.fields.push((key, self.values.len() as u32));
        }
        self
    }

    /// `field` for a value the caller writes into the line itself: the
    /// formatting machinery costs ≈ 400 instructions a field, and every
    /// flow's alert line has several.
    pub fn with(mut self, key: &'static str, write: impl FnOnce(&mut String)) -> Alert {
        let start = self.values.len();
        write(&mut self.values);
        if self.values.len() > start {
            self.fields.push((key, self.values.len() as u32));
        }
        self
    }

    /// `field` for a MAC, written by hand.
    pub fn mac(self, key: &'static str, mac: crate::mac::Mac) -> Alert {
        self.with(key, |s| s.push_str(std::str::from_utf8(&mac.hex()).unwrap_or_default()))
    }

    /// `field` for an address, IPv4 written by hand (see `Addr`).
    pub fn addr(self, key: &'static str, addr: std::net::IpAddr) -> Alert {
        match addr {
            std::net::IpAddr::V4(a) => self.with(key, |s| {
                let (b, n) = v4_digits(a);
                s.push_str(std::str::from_utf8(&b[..n]).unwrap_or_default());
            }),
            a => self.field(key, Addr(a)),
        }
    }

    /// `field` for a number, its digits written by itoa (not `fmt`).
    pub fn num(self, key: &'static str, n: u64) -> Alert {
        self.with(key, |s| s.push_str(itoa::Buffer::new().format(n)))
    }

    pub fn opt(self, key: &'static str, value: Option<impl fmt::Display>) -> Alert {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// Replaces the value of `key` where it stands (adds it at the end if
    /// absent): the daemon fills in what the engine cannot know (a vendor).
    pub fn set(&mut self, key: &'static str, value: impl fmt::Display) {
        let v = value.to_string();
        match self.fields.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let (start, end) = self.span(i);
                self.values.replace_range(start..end, &v);
                let grown = v.len() as i64 - (end - start) as i64;
                for f in &mut self.fields[i..] {
                    f.1 = (i64::from(f.1) + grown) as u32;
                }
            }
            None if !v.is_empty() => {
                self.values.push_str(&v);
                self.fields.push((key, self.values.len() as u32));
            }
            None => {}
        }
    }

    fn span(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.fields[i - 1].1 as usize };
        (start, self.fields[i].1 as usize)
    }

    /// The `key=value` fields in their order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        (0..self.fields.len()).map(move |i| {
            let (start, end) = self.span(i);
            (self.fields[i].0, &self.values[start..end])
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn severity(&self) -> Severity {
        self.verb.severity()
    }

}

/// An address as an alert prints it: IPv4 digits written by hand (std's
/// `Display` goes through the formatting machinery once per octet, ≈ 700
/// instructions an address), IPv6 by std.
#[derive(Debug, Clone, Copy)]
pub struct Addr(pub std::net::IpAddr);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = match self.0 {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(a) => return fmt::Display::fmt(&a, f),
        };
        let (s, n) = v4_digits(a);
        f.pad(std::str::from_utf8(&s[..n]).map_err(|_| fmt::Error)?)
    }
}

/// The dotted digits of an IPv4 address, and how many bytes they take.
fn v4_digits(a: std::net::Ipv4Addr) -> ([u8; 15], usize) {
    let mut s = [0u8; 15];
    let mut n = 0;
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            s[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            s[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            s[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        s[n] = b'0' + o % 10;
        n += 1;
    }
    (s, n)
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb.as_str())?;
        for (k, v) in self.fields() {
            f.write_char(' ')?;
            f.write_str(k)?;
            f.write_char('=')?;
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

/// The alert lines sent lately, newest last, for `leash alerts` and the
/// `status` summary: a bounded ring; what falls out is counted.
#[derive(Debug)]
pub struct Recent {
    lines: std::collections::VecDeque<(u64, Alert)>,
    cap: usize,
    pub evicted: u64,
}

/// Lines `Recent` keeps by default (a few hundred bytes each).
pub const RECENT_LINES: usize = 512;

impl Recent {
    pub fn new(cap: usize) -> Recent {
        Recent { lines: std::collections::VecDeque::with_capacity(cap.min(64)), cap: cap.max(1), evicted: 0 }
    }

    pub fn push(&mut self, alert: &Alert, now: u64) {
        if self.lines.len() >= self.cap {
            self.lines.pop_front();
            self.evicted += 1;
        }
        self.lines.push_back((now, alert.clone()));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Lines sent at or after `since` (unix seconds), at most the `last`
    /// newest, oldest first, as the CLI's `--json` shows them.
    pub fn report(&self, since: u64, last: usize) -> Vec<RecentLine> {
        let from: Vec<&(u64, Alert)> = self.lines.iter().filter(|(t, _)| *t >= since).collect();
        let skip = from.len().saturating_sub(last);
        from.into_iter()
            .skip(skip)
            .map(|(t, a)| RecentLine {
                time: *t,
                severity: a.severity().as_str(),
                verb: a.verb.as_str(),
                line: a.to_string(),
                fields: a.fields().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentLine {
    pub time: u64,
    pub severity: &'static str,
    pub verb: &'static str,
    pub line: String,
    /// The `key=value` fields as the daemon built them (unquoted).
    pub fields: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lines_are_bounded_and_filtered() {
        let mut r = Recent::new(3);
        for t in 1..=5u64 {
            r.push(&Alert::new(Verb::Block).field("n", t).field("name", "a b"), t * 10);
        }
        assert_eq!((r.len(), r.evicted), (3, 2));
        let all = r.report(0, usize::MAX);
        assert_eq!(all.iter().map(|l| l.time).collect::<Vec<_>>(), vec![30, 40, 50]);
        assert_eq!(all[2].line, r#"BLOCK n=5 name="a b""#);
        assert_eq!(all[2].fields["name"], "a b");
        assert_eq!((all[2].verb, all[2].severity), ("BLOCK", "warning"));
        assert_eq!(r.report(40, usize::MAX).len(), 2);
        assert_eq!(r.report(0, 1)[0].time, 50, "the newest");
    }

    #[test]
    fn addresses_print_as_std_prints_them() {
        for a in ["0.0.0.0", "1.2.3.4", "10.0.100.9", "192.168.7.255", "255.255.255.255", "2001:db8::7", "::ffff:1.2.3.4"] {
            let ip: std::net::IpAddr = a.parse().unwrap();
            assert_eq!(Addr(ip).to_string(), ip.to_string());
        }
        for i in 0..=255u8 {
            let ip = std::net::IpAddr::from([i, 255 - i, i / 3, i.wrapping_mul(7)]);
            assert_eq!(Addr(ip).to_string(), ip.to_string());
        }
    }

    #[test]
    fn hand_written_fields_read_as_formatted_ones() {
        let mac = crate::mac::Mac([0x02, 0xab, 0, 0x10, 0x07, 0xff]);
        let (v4, v6): (std::net::IpAddr, std::net::IpAddr) = ("10.0.200.9".parse().unwrap(), "2001:db8::7".parse().unwrap());
        let by_hand = Alert::new(Verb::Alert).mac("d", mac).addr("a", v4).addr("b", v6).num("n", 0).num("m", u64::MAX).num("p", 443);
        let formatted = Alert::new(Verb::Alert).field("d", mac).field("a", v4).field("b", v6).field("n", 0).field("m", u64::MAX).field("p", 443);
        assert_eq!(by_hand, formatted);
        let rules = [crate::policy::Rule::Unlisted, crate::policy::Rule::List("ads".into()), crate::policy::Rule::Manual, crate::policy::Rule::DnsBypass, crate::policy::Rule::Consent("=a.example".parse().unwrap())];
        for r in rules {
            assert_eq!(Alert::new(Verb::Block).with("rule", |s| r.push_to(s)), Alert::new(Verb::Block).field("rule", &r));
        }
    }

    #[test]
    fn set_replaces_in_place() {
        let mut a = Alert::new(Verb::Device).field("device", "x").field("vendor", "unknown").field("profile", "iot");
        a.set("vendor", "Acme Inc.");
        assert_eq!(a.to_string(), r#"DEVICE device=x vendor="Acme Inc." profile=iot"#);
        a.set("device", "");
        a.set("extra", 7);
        a.set("none", "");
        assert_eq!(a.to_string(), r#"DEVICE device="" vendor="Acme Inc." profile=iot extra=7"#);
        assert_eq!((a.get("profile"), a.get("extra"), a.get("none")), (Some("iot"), Some("7"), None));
        let b = Alert::new(Verb::Alert).field("a", "").field("b", 1).opt("c", None::<u8>).field("d", "x").text("e", "").text("f", "y z");
        assert_eq!(b.fields().collect::<Vec<_>>(), vec![("b", "1"), ("d", "x"), ("f", "y z")]);
    }

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

//! Selectors: what a consent, a deny list or a command line names
//! (SPEC §3): DNS names, addresses and prefixes, countries, AS numbers, `any`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::policy::cidr::Cidr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// `example.com` (exact = false: the name and every name below it) or
    /// `=example.com` (exact = true). Stored lower-case, no trailing dot.
    Domain { name: String, exact: bool },
    /// `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`.
    Net(Cidr),
    /// `country:CN` — ISO 3166 alpha-2, stored upper-case.
    Country([u8; 2]),
    /// `asn:4808`.
    Asn(u32),
    /// `any`.
    Any,
}

/// What is known of a destination when it is judged.
#[derive(Debug, Clone, Default)]
pub struct Destination<'a> {
    pub addr: Option<IpAddr>,
    /// DNS names the device resolved to this address, lower-case.
    pub names: &'a [String],
    /// `names[..trusted]` came from the router's own resolver: only these
    /// may match a consent (SPEC §2 "Which answers count").
    pub trusted: usize,
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

impl<'a> Destination<'a> {
    /// The destination as a consent sees it: without the names only an
    /// outside resolver gave.
    pub fn for_consent(&self) -> Destination<'a> {
        let names = &self.names[..self.trusted.min(self.names.len())];
        Destination { names, trusted: names.len(), ..self.clone() }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadSelector {
    #[error("empty selector")]
    Empty,
    #[error("not a valid DNS name: {0:?}")]
    Name(String),
    #[error("not a valid address or prefix: {0:?}")]
    Net(String),
    #[error("not a two-letter country code: {0:?}")]
    Country(String),
    #[error("not an AS number: {0:?}")]
    Asn(String),
}

impl Selector {
    pub fn matches(&self, dst: &Destination<'_>) -> bool {
        match self {
            Selector::Any => true,
            Selector::Net(c) => dst.addr.is_some_and(|a| c.contains(a)),
            Selector::Country(cc) => dst.country.as_ref() == Some(cc),
            Selector::Asn(n) => dst.asn == Some(*n),
            Selector::Domain { name, exact } => dst.names.iter().any(|n| name_matches(name, *exact, n)),
        }
    }
}

/// `pattern` matches `name` itself, and (unless exact) every name below it.
pub fn name_matches(pattern: &str, exact: bool, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case(pattern) {
        return true;
    }
    !exact
        && name.len() > pattern.len()
        && name.as_bytes()[name.len() - pattern.len() - 1] == b'.'
        && name[name.len() - pattern.len()..].eq_ignore_ascii_case(pattern)
}

/// Lower-cases and checks a DNS name (letters, digits, `-`, `_`, dots;
/// labels 1..=63 bytes, 253 in all). A trailing dot is dropped.
pub fn normalize_name(s: &str) -> Option<String> {
    check_name(s).map(str::to_ascii_lowercase)
}

/// `normalize_name` without the lower-casing (and so without allocating):
/// the name without its trailing dot, if it is a valid DNS name.
pub fn check_name(s: &str) -> Option<&str> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return None;
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
    }
    Some(s)
}

impl FromStr for Selector {
    type Err = BadSelector;
    fn from_str(s: &str) -> Result<Self, BadSelector> {
        let s = s.trim();
        if s.is_empty() {
            return Err(BadSelector::Empty);
        }
        if s == "any" {
            return Ok(Selector::Any);
        }
        if let Some(cc) = s.strip_prefix("country:") {
            let b = cc.as_bytes();
            if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
                return Err(BadSelector::Country(cc.to_string()));
            }
            return Ok(Selector::Country([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]));
        }
        if let Some(n) = s.strip_prefix("asn:") {
            let n = n.strip_prefix("AS").or_else(|| n.strip_prefix("as")).unwrap_or(n);
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadSelector::Asn(n.to_string()));
            }
            return n.parse().map(Selector::Asn).map_err(|_| BadSelector::Asn(n.to_string()));
        }
        if s.contains(':') || s.contains('/') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return s.parse().map(Selector::Net).map_err(|_| BadSelector::Net(s.to_string()));
        }
        let (exact, name) = match s.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = normalize_name(name).ok_or_else(|| BadSelector::Name(s.to_string()))?;
        Ok(Selector::Domain { name, exact })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Domain { name, exact: true } => write!(f, "={name}"),
            Selector::Domain { name, exact: false } => f.write_str(name),
            Selector::Net(c) => write!(f, "{c}"),
            Selector::Country(cc) => write!(f, "country:{}{}", cc[0] as char, cc[1] as char),
            Selector::Asn(n) => write!(f, "asn:{n}"),
            Selector::Any => f.write_str("any"),
        }
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(sel("Example.COM."), Selector::Domain { name: "example.com".into(), exact: false });
        assert_eq!(sel("=example.com"), Selector::Domain { name: "example.com".into(), exact: true });
        assert_eq!(sel("203.0.113.0/24"), Selector::Net("203.0.113.0/24".parse().unwrap()));
        assert_eq!(sel("2001:db8::/32"), Selector::Net("2001:db8::/32".parse().unwrap()));
        assert_eq!(sel("country:cn"), Selector::Country(*b"CN"));
        assert_eq!(sel("asn:4808"), Selector::Asn(4808));
        assert_eq!(sel("any"), Selector::Any);
        for s in ["=example.com", "example.com", "203.0.113.7", "country:CN", "asn:4808", "any", "2001:db8::/32"] {
            assert_eq!(sel(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "country:CHN", "asn:x", "asn:", "1.2.3.999", "exa mple.com", "a..b", "=", "300.1.1.1/8"] {
            assert!(s.parse::<Selector>().is_err(), "{s}");
        }
    }

    #[test]
    fn name_matching() {
        assert!(name_matches("example.com", false, "example.com"));
        assert!(name_matches("example.com", false, "a.b.Example.com."));
        assert!(!name_matches("example.com", false, "badexample.com"));
        assert!(!name_matches("example.com", true, "a.example.com"));
        assert!(name_matches("example.com", true, "example.com"));
    }

    #[test]
    fn matches_destination() {
        let names = vec!["cdn.ring.com".to_string()];
        let d = Destination { addr: Some("203.0.113.7".parse().unwrap()), names: &names, trusted: names.len(), country: Some(*b"CN"), asn: Some(4808) };
        assert!(sel("ring.com").matches(&d));
        assert!(!sel("=ring.com").matches(&d));
        assert!(sel("203.0.113.0/24").matches(&d));
        assert!(sel("country:CN").matches(&d));
        assert!(sel("asn:4808").matches(&d));
        assert!(!sel("asn:1").matches(&d));
        assert!(sel("any").matches(&d));
    }
}

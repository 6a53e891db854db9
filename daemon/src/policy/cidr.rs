//! Address prefixes (`203.0.113.0/24`, `2001:db8::/32`) and single addresses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix; a single address is a prefix of full length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an address or prefix: {0:?}")]
pub struct BadCidr(pub String);

impl Cidr {
    /// The prefix with host bits cleared; `None` when `len` is too long.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        Some(Cidr { addr: mask(addr, len), len })
    }

    pub fn host(addr: IpAddr) -> Cidr {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_host(&self) -> bool {
        self.len == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // `mask(ip) == addr` of one family, without building an address:
        // every flow asks whether its ends are on the LAN.
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask4(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => u128::from(a) & mask6(self.len) == u128::from(net),
            _ => false,
        }
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask4(len)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask6(len)).into()),
    }
}

/// The netmask of a /len, as bits (len ≤ 32).
fn mask4(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

/// The netmask of a /len, as bits (len ≤ 128).
fn mask6(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
}

impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_string());
        match s.split_once('/') {
            None => Ok(Cidr::host(s.parse().map_err(|_| bad())?)),
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let len: u8 = l.parse().map_err(|_| bad())?;
                Cidr::new(addr, len).ok_or_else(bad)
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_masks() {
        let c: Cidr = "203.0.113.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "203.0.113.0/24");
        assert!(c.contains("203.0.113.5".parse().unwrap()));
        assert!(!c.contains("203.0.114.5".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::9".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("198.51.100.1".parse().unwrap()));
        assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().to_string(), "192.0.2.7");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "1.2.3.4/33", "1.2.3.4/", "1.2.3/8", "::/129", "1.2.3.4/+1", "x"] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }
}

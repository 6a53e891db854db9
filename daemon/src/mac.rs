//! Ethernet MAC addresses: the identity of a device.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

/// One 48-bit word, not six bytes and a length: a MAC keys most of the
/// engine's tables.
impl std::hash::Hash for Mac {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, 0, 0]));
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a MAC address (want aa:bb:cc:dd:ee:ff): {0:?}")]
pub struct BadMac(pub String);

impl Mac {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(|c| c == ':' || c == '-');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(std::str::from_utf8(&self.hex()).map_err(|_| fmt::Error)?)
    }
}

impl Mac {
    /// `aa:bb:cc:dd:ee:ff`, as ASCII. By hand: `write!` with six `{:02x}`
    /// cost ≈ 900 instructions, and every alert line names a device.
    pub fn hex(&self) -> [u8; 17] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            s[3 * i] = HEX[usize::from(b >> 4)];
            s[3 * i + 1] = HEX[usize::from(b & 15)];
        }
        s
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: Mac = "AA:bb:0c:dd:ee:ff".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:0c:dd:ee:ff");
        assert_eq!("aa-bb-0c-dd-ee-ff".parse::<Mac>().unwrap(), m);
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "aa:bb", "aa:bb:cc:dd:ee:ff:00", "aa:bb:cc:dd:ee:fg", "a:bb:cc:dd:ee:ff0"] {
            assert!(s.parse::<Mac>().is_err(), "{s}");
        }
    }
}

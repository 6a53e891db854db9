//! A minimal MaxMind DB writer, so that tests and the lab can build small
//! `.mmdb` files without network access or third-party tools. leash itself
//! only reads databases; the daemon binary does not use this module.
//!
//! Format (MaxMind DB spec 2.0): an IPv6 binary search tree of 24-bit
//! records, 16 zero bytes, the data section, then the metadata marker
//! `\xAB\xCD\xEFMaxMind.com` and the metadata map. IPv4 networks live under
//! `::/96`, where readers look for them.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::policy::cidr::Cidr;

/// A data-section value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// The tree needs a node to hang a record on.
    #[error("a /0 network cannot be written")]
    WholeSpace,
    /// 24-bit records address at most 16 M nodes plus data.
    #[error("database too large for 24-bit records")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Empty,
    Node(u32),
    /// Offset in the data section.
    Data(u32),
}

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
const RECORD_MAX: u32 = (1 << 24) - 1;

#[derive(Debug)]
pub struct Writer {
    database_type: String,
    nodes: Vec<[Record; 2]>,
    data: Vec<u8>,
    /// Encoded value → offset, so repeated values are stored once.
    offsets: HashMap<Vec<u8>, u32>,
}

impl Writer {
    pub fn new(database_type: &str) -> Writer {
        Writer {
            database_type: database_type.to_string(),
            nodes: vec![[Record::Empty; 2]],
            data: Vec::new(),
            offsets: HashMap::new(),
        }
    }

    /// Places `value` on `net`. Insert wider networks before the narrower
    /// ones inside them: a later insert overwrites what lies below it.
    pub fn insert(&mut self, net: Cidr, value: &Value) -> Result<(), WriteError> {
        let (bits, len) = match net.addr() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), u32::from(net.len()) + 96),
            IpAddr::V6(a) => (u128::from(a), u32::from(net.len())),
        };
        if len == 0 {
            return Err(WriteError::WholeSpace);
        }
        let offset = self.data_offset(value)?;
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth == len - 1 {
                self.nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match self.nodes[node][bit] {
                Record::Node(i) => i as usize,
                // Split an empty or wider record into a node holding it twice.
                other => {
                    let i = u32::try_from(self.nodes.len()).map_err(|_| WriteError::TooLarge)?;
                    self.nodes.push([other; 2]);
                    self.nodes[node][bit] = Record::Node(i);
                    i as usize
                }
            };
        }
        Ok(())
    }

    fn data_offset(&mut self, value: &Value) -> Result<u32, WriteError> {
        let mut enc = Vec::new();
        encode(value, &mut enc);
        if let Some(&o) = self.offsets.get(&enc) {
            return Ok(o);
        }
        let o = u32::try_from(self.data.len()).map_err(|_| WriteError::TooLarge)?;
        self.data.extend_from_slice(&enc);
        self.offsets.insert(enc, o);
        Ok(o)
    }

    /// The database file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let node_count = u32::try_from(self.nodes.len()).map_err(|_| WriteError::TooLarge)?;
        let record = |r: Record| -> Result<u32, WriteError> {
            let v = match r {
                Record::Empty => node_count,
                Record::Node(i) => i,
                Record::Data(o) => node_count.checked_add(16).and_then(|b| b.checked_add(o)).ok_or(WriteError::TooLarge)?,
            };
            if v > RECORD_MAX {
                return Err(WriteError::TooLarge);
            }
            Ok(v)
        };
        let mut out = Vec::with_capacity(self.nodes.len() * 6 + 16 + self.data.len() + 256);
        for pair in &self.nodes {
            for r in pair {
                out.extend_from_slice(&record(*r)?.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        let metadata = Value::Map(vec![
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(1_700_000_000)),
            ("database_type".into(), Value::Str(self.database_type.clone())),
            ("description".into(), Value::Map(vec![("en".into(), Value::Str("leash test database".into()))])),
            ("ip_version".into(), Value::U16(6)),
            ("languages".into(), Value::Array(vec![Value::Str("en".into())])),
            ("node_count".into(), Value::U32(node_count)),
            ("record_size".into(), Value::U16(24)),
        ]);
        encode(&metadata, &mut out);
        Ok(out)
    }
}

/// Control byte (type and size), extended type byte, size bytes.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (high, extended) = if kind <= 7 { (kind << 5, None) } else { (0, Some(kind - 7)) };
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(high | size_bits);
    out.extend(extended);
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Bool(b) => control(out, 14, usize::from(*b)),
        Value::Map(kv) => {
            control(out, 7, kv.len());
            for (k, v) in kv {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(v, out);
            }
        }
    }
}

/// A GeoLite2-Country-shaped record.
pub fn country_record(iso_code: &str, name: &str) -> Value {
    let place = || {
        Value::Map(vec![
            ("iso_code".into(), Value::Str(iso_code.into())),
            ("names".into(), Value::Map(vec![("en".into(), Value::Str(name.into()))])),
        ])
    };
    Value::Map(vec![
        ("continent".into(), Value::Map(vec![("code".into(), Value::Str("AS".into()))])),
        ("country".into(), place()),
        ("registered_country".into(), place()),
    ])
}

/// A GeoLite2-ASN-shaped record.
pub fn asn_record(asn: u32, org: &str) -> Value {
    Value::Map(vec![
        ("autonomous_system_number".into(), Value::U32(asn)),
        ("autonomous_system_organization".into(), Value::Str(org.into())),
    ])
}

fn net(s: &str) -> Cidr {
    // Only called with the literals below.
    s.parse().unwrap_or_else(|_| Cidr::host(IpAddr::from([0u8; 4])))
}

/// The country database of the tests and the lab: documentation ranges
/// placed in countries.
pub fn test_country_db() -> Result<Vec<u8>, WriteError> {
    let mut w = Writer::new("GeoLite2-Country");
    w.insert(net("203.0.113.0/24"), &country_record("CN", "China"))?;
    w.insert(net("198.51.100.0/24"), &country_record("US", "United States"))?;
    // A narrower network inside a wider one: the narrower wins.
    w.insert(net("192.0.2.0/24"), &country_record("DE", "Germany"))?;
    w.insert(net("192.0.2.128/25"), &country_record("FR", "France"))?;
    w.insert(net("2001:db8:bad::/48"), &country_record("CN", "China"))?;
    w.insert(net("2001:db8:1::/48"), &country_record("US", "United States"))?;
    // Only a registered country, as for some anycast and mobile ranges.
    w.insert(
        net("100.64.0.0/10"),
        &Value::Map(vec![(
            "registered_country".into(),
            Value::Map(vec![("iso_code".into(), Value::Str("NL".into()))]),
        )]),
    )?;
    w.to_bytes()
}

/// The ASN database of the tests and the lab.
pub fn test_asn_db() -> Result<Vec<u8>, WriteError> {
    let mut w = Writer::new("GeoLite2-ASN");
    w.insert(net("203.0.113.0/24"), &asn_record(4808, "China Unicom Beijing Province Network"))?;
    w.insert(net("198.51.100.0/24"), &asn_record(64500, "Documentation AS"))?;
    w.insert(net("2001:db8:bad::/48"), &asn_record(4808, "China Unicom Beijing Province Network"))?;
    // A record without the organization.
    w.insert(net("192.0.2.0/24"), &Value::Map(vec![("autonomous_system_number".into(), Value::U32(64496))]))?;
    w.to_bytes()
}

//! leash's nftables objects (SPEC §6): the table `inet leash`, its chains and
//! the named sets that hold every decision, so that a decision costs one set
//! update and never a new rule. Pure: `ruleset` builds the script that
//! (re)creates the table, `SetChange` describes element updates, `watch`
//! decides when someone else's change calls for a rebuild; the adapters
//! in `apply` send them.

pub mod apply;
mod ruleset;
pub mod watch;

pub use ruleset::{queue_probe, ruleset, Bypass, DnsPath, Layout, BYPASS_PREFIX};

use std::net::IpAddr;
use std::time::Duration;

use crate::mac::Mac;

pub const SET_QUARANTINE_MAC: &str = "quarantine_mac";
pub const SET_QUARANTINE_V4: &str = "quarantine_v4";
pub const SET_QUARANTINE_V6: &str = "quarantine_v6";
pub const SET_BLOCK_V4: &str = "block_v4";
pub const SET_BLOCK_V6: &str = "block_v6";
pub const SET_BYPASS_MAC: &str = "bypass_mac";
pub const SET_DOH_V4: &str = "doh_v4";
pub const SET_DOH_V6: &str = "doh_v6";

/// One element of one of leash's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elem {
    /// A quarantined device: all its traffic to the internet is dropped.
    QuarantineMac(Mac),
    /// An address of a quarantined device: inbound traffic from the WAN is dropped.
    QuarantineAddr(IpAddr),
    /// One device may no longer reach one address.
    Block(Mac, IpAddr),
    /// A device whose profile has `dns_bypass = "block"`: its DNS goes to
    /// the router's resolver, DoT/DoQ and DoH endpoints are cut. Derived
    /// from configuration and the device table, never persisted.
    BypassMac(Mac),
}

impl Elem {
    pub fn set(&self) -> &'static str {
        match self {
            Elem::QuarantineMac(_) => SET_QUARANTINE_MAC,
            Elem::BypassMac(_) => SET_BYPASS_MAC,
            Elem::QuarantineAddr(IpAddr::V4(_)) => SET_QUARANTINE_V4,
            Elem::QuarantineAddr(IpAddr::V6(_)) => SET_QUARANTINE_V6,
            Elem::Block(_, IpAddr::V4(_)) => SET_BLOCK_V4,
            Elem::Block(_, IpAddr::V6(_)) => SET_BLOCK_V6,
        }
    }

    /// The element as `nft` writes it.
    pub fn nft_key(&self) -> String {
        match self {
            Elem::QuarantineMac(m) | Elem::BypassMac(m) => m.to_string(),
            Elem::QuarantineAddr(a) => a.to_string(),
            Elem::Block(m, a) => format!("{m} . {a}"),
        }
    }
}

/// How the nf_tables codec writes an element. A concatenation pads each
/// field to 4 bytes, so a block (MAC . IP) is 8 + 4 = 12 bytes for IPv4 and
/// 8 + 16 = 24 for IPv6; a lone MAC is 6.
impl crate::codec::nftables::SetElem for Elem {
    fn set(&self) -> &str {
        Elem::set(self)
    }

    fn key_bytes(&self) -> Vec<u8> {
        fn ip(v: &mut Vec<u8>, a: &IpAddr) {
            match a {
                IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
            }
        }
        let mut v = Vec::with_capacity(24);
        match self {
            Elem::QuarantineMac(m) | Elem::BypassMac(m) => v.extend_from_slice(&m.0),
            Elem::QuarantineAddr(a) => ip(&mut v, a),
            Elem::Block(m, a) => {
                v.extend_from_slice(&m.0);
                v.extend_from_slice(&[0, 0]);
                ip(&mut v, a);
            }
        }
        v
    }

    fn nft_key(&self) -> String {
        Elem::nft_key(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetChange {
    /// `timeout: None` = until removed.
    Add { elem: Elem, timeout: Option<Duration> },
    Delete(Elem),
}

//! The device table: LAN devices by MAC, with every address seen for them
//! (IPv4, IPv6 and rotating privacy addresses fold into one device).
//! Capped: the least recently seen device is evicted in O(1), and counted;
//! devices the engine pins (configured, consented, quarantined, blocked)
//! are never chosen.

use crate::hash::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::bounded::{BoundedMap, Insert};
use crate::mac::Mac;

/// Addresses kept per device; privacy addresses rotate daily, so old ones
/// age out instead of growing without bound.
pub const MAX_ADDRS_PER_DEVICE: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub mac: Mac,
    /// Newest first.
    pub addrs: Vec<IpAddr>,
    /// Host name from the DHCP lease file, if any.
    pub lease_name: Option<String>,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Flows judged for it.
    pub flows: u64,
}

#[derive(Debug)]
pub struct DeviceTable {
    by_mac: BoundedMap<Mac, Device>,
    by_ip: HashMap<IpAddr, Mac>,
    /// Devices dropped because the table was full.
    pub evicted: u64,
    /// New devices not taken in because every device held was pinned.
    pub refused: u64,
    /// Pins not granted because pinned devices had reached their share.
    pub pins_refused: u64,
}

impl DeviceTable {
    /// At most `cap` devices. Pinned ones may take three quarters of it: a
    /// flood of pinned devices (say, spoofed MACs that all earned a block)
    /// must still leave room to identify new devices, whose flows would
    /// otherwise go unjudged.
    pub fn new(cap: usize) -> DeviceTable {
        let cap = cap.max(1);
        DeviceTable {
            by_mac: BoundedMap::with_max_pinned(cap, cap - cap / 4),
            by_ip: HashMap::default(),
            evicted: 0,
            refused: 0,
            pins_refused: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    pub fn get(&self, mac: Mac) -> Option<&Device> {
        self.by_mac.get(&mac)
    }

    pub fn mac_of(&self, ip: IpAddr) -> Option<Mac> {
        self.by_ip.get(&ip).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.by_mac.values()
    }

    pub fn pinned_len(&self) -> usize {
        self.by_mac.pinned_len()
    }

    pub fn is_pinned(&self, mac: Mac) -> bool {
        self.by_mac.is_pinned(&mac)
    }

    /// Records that `ip` belongs to `mac` (a neighbour entry or a lease);
    /// a new device is pinned at once when `pinned`. Returns true when the
    /// address is new for that device.
    pub fn observe(&mut self, mac: Mac, ip: IpAddr, now: u64, pinned: bool) -> bool {
        if !self.by_mac.contains_key(&mac) {
            let dev = Device { mac, addrs: Vec::new(), lease_name: None, first_seen: now, last_seen: now, flows: 0 };
            match self.by_mac.insert(mac, dev) {
                Insert::Added | Insert::Replaced(_) => {}
                Insert::Evicted(victim, d) => self.evicted_one(victim, d),
                Insert::Refused(..) => {
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        tracing::warn!(device = %mac, cap = self.by_mac.cap(), refused = self.refused, "device table full of pinned devices; a new device is not tracked");
                    }
                    return false;
                }
            }
            if pinned {
                self.pin(mac, true);
            }
        } else {
            self.by_mac.touch(&mac);
        }
        if let Some(old) = self.by_ip.get(&ip).copied() {
            if old != mac {
                // The address moved to another device (DHCP reuse).
                if let Some(d) = self.by_mac.get_mut(&old) {
                    d.addrs.retain(|a| *a != ip);
                }
            }
        }
        let Some(dev) = self.by_mac.get_mut(&mac) else { return false };
        dev.last_seen = dev.last_seen.max(now);
        let new = if let Some(pos) = dev.addrs.iter().position(|a| *a == ip) {
            let a = dev.addrs.remove(pos);
            dev.addrs.insert(0, a);
            false
        } else {
            dev.addrs.insert(0, ip);
            if dev.addrs.len() > MAX_ADDRS_PER_DEVICE {
                if let Some(gone) = dev.addrs.pop() {
                    self.by_ip.remove(&gone);
                }
            }
            true
        };
        self.by_ip.insert(ip, mac);
        new
    }

    /// Keeps a device in the table whatever else comes (or lets it go
    /// again). A device not held yet is pinned when it is first observed:
    /// the caller passes `pinned` to `observe`. False when the pin was
    /// refused (pinned devices at their share), counted.
    pub fn pin(&mut self, mac: Mac, pinned: bool) -> bool {
        if !self.by_mac.contains_key(&mac) || self.by_mac.pin(&mac, pinned) {
            return true;
        }
        self.pins_refused += 1;
        if self.pins_refused.is_power_of_two() {
            tracing::warn!(device = %mac, pinned = self.by_mac.pinned_len(), refused = self.pins_refused, "too many pinned devices; this one may be evicted");
        }
        false
    }

    /// A neighbour entry went away: the address is no longer this device's.
    pub fn forget_addr(&mut self, ip: IpAddr) {
        if let Some(mac) = self.by_ip.remove(&ip) {
            if let Some(d) = self.by_mac.get_mut(&mac) {
                d.addrs.retain(|a| *a != ip);
            }
        }
    }

    pub fn touch(&mut self, mac: Mac, now: u64) {
        if let Some(d) = self.by_mac.touch_get_mut(&mac) {
            d.last_seen = d.last_seen.max(now);
            d.flows += 1;
        }
    }

    pub fn set_lease_name(&mut self, mac: Mac, name: Option<String>) {
        if let Some(d) = self.by_mac.get_mut(&mac) {
            d.lease_name = name;
        }
    }

    fn evicted_one(&mut self, victim: Mac, d: Device) {
        for a in d.addrs {
            // Only if it still points at the victim (it may have moved).
            if self.by_ip.get(&a) == Some(&victim) {
                self.by_ip.remove(&a);
            }
        }
        self.evicted += 1;
        // Rate-limited: a flood evicts thousands.
        if self.evicted.is_power_of_two() {
            tracing::warn!(device = %victim, cap = self.by_mac.cap(), evicted = self.evicted, "device table full, evicted the least recently seen device");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0xaa, 0, 0, 0, 0, n])
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn folds_v4_and_v6_addresses_into_one_device() {
        let mut t = DeviceTable::new(8);
        assert!(t.observe(mac(1), ip("192.168.1.23"), 1, false));
        assert!(t.observe(mac(1), ip("2001:db8::23"), 2, false));
        assert!(t.observe(mac(1), ip("2001:db8::beef"), 3, false));
        assert!(!t.observe(mac(1), ip("192.168.1.23"), 4, false));
        assert_eq!(t.len(), 1);
        assert_eq!(t.mac_of(ip("2001:db8::beef")), Some(mac(1)));
        assert_eq!(t.get(mac(1)).unwrap().addrs[0], ip("192.168.1.23"));
        assert_eq!(t.get(mac(1)).unwrap().last_seen, 4);
    }

    #[test]
    fn address_moves_between_devices() {
        let mut t = DeviceTable::new(8);
        t.observe(mac(1), ip("192.168.1.5"), 1, false);
        t.observe(mac(2), ip("192.168.1.5"), 2, false);
        assert_eq!(t.mac_of(ip("192.168.1.5")), Some(mac(2)));
        assert!(t.get(mac(1)).unwrap().addrs.is_empty());
    }

    #[test]
    fn caps_devices_and_addresses() {
        let mut t = DeviceTable::new(2);
        t.observe(mac(1), ip("192.168.1.1"), 1, false);
        t.observe(mac(2), ip("192.168.1.2"), 2, false);
        t.observe(mac(3), ip("192.168.1.3"), 3, false);
        assert_eq!(t.len(), 2);
        assert_eq!(t.evicted, 1);
        assert!(t.get(mac(1)).is_none());
        assert_eq!(t.mac_of(ip("192.168.1.1")), None);
        for i in 0..40u16 {
            t.observe(mac(3), IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)), 10, false);
        }
        assert_eq!(t.get(mac(3)).unwrap().addrs.len(), MAX_ADDRS_PER_DEVICE);
        assert_eq!(t.mac_of(ip("2001:db8::1")), None);
        assert_eq!(t.mac_of(ip("2001:db8::27")), Some(mac(3)));
    }

    #[test]
    fn pinned_devices_are_never_evicted() {
        let mut t = DeviceTable::new(4);
        t.observe(mac(1), ip("192.168.1.1"), 1, true);
        t.observe(mac(2), ip("192.168.1.2"), 2, false);
        assert!(t.pin(mac(2), true));
        assert!(t.pin(mac(9), true), "unknown devices: nothing to do");
        for n in 3..40u8 {
            t.observe(mac(n), IpAddr::from([192, 168, 1, n]), n as u64, false);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.mac_of(ip("192.168.1.1")), Some(mac(1)));
        assert_eq!(t.mac_of(ip("192.168.1.2")), Some(mac(2)));
        assert_eq!(t.evicted, 37 - 2);
        // Three quarters may be pinned: the fourth device keeps rotating.
        assert!(t.pin(mac(39), true));
        assert!(!t.pin(mac(38), true), "share of pins used up");
        assert_eq!(t.pins_refused, 1);
        t.observe(mac(50), ip("192.168.1.50"), 50, false);
        assert!(t.get(mac(38)).is_none() && t.get(mac(39)).is_some());
        // Unpinned, a device ages out like any other.
        assert!(t.pin(mac(1), false));
        t.observe(mac(51), ip("192.168.1.51"), 51, false);
        t.observe(mac(52), ip("192.168.1.52"), 52, false);
        assert!(t.get(mac(1)).is_none());
        assert_eq!(t.mac_of(ip("192.168.1.1")), None);
    }

    #[test]
    fn a_full_pinned_table_refuses_new_devices() {
        // A table of one, pinned: max_pinned rounds to the whole table.
        let mut t = DeviceTable::new(1);
        t.observe(mac(1), ip("192.168.1.1"), 1, true);
        assert!(!t.observe(mac(2), ip("192.168.1.2"), 2, false));
        assert_eq!((t.refused, t.len()), (1, 1));
        assert_eq!(t.mac_of(ip("192.168.1.2")), None);
    }

    #[test]
    fn eviction_keeps_addresses_consistent() {
        let mut t = DeviceTable::new(64);
        let mut now = 0;
        // More devices than fit, each with two addresses, some moving.
        for round in 0..20u32 {
            for n in 0..100u32 {
                now += 1;
                let m = Mac([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
                t.observe(m, IpAddr::from((0x0a00_0000 + n).to_be_bytes()), now, false);
                t.observe(m, IpAddr::from((0x0b00_0000 + (n + round) % 100).to_be_bytes()), now, false);
            }
        }
        assert_eq!(t.len(), 64);
        for (ip, mac) in &t.by_ip {
            let d = t.get(*mac).expect("by_ip points at held devices only");
            assert!(d.addrs.contains(ip), "{ip} listed for {mac}");
        }
        for d in t.iter() {
            for a in &d.addrs {
                assert_eq!(t.mac_of(*a), Some(d.mac));
            }
        }
    }
}

//! The device table: LAN devices by MAC, with every address seen for them
//! (IPv4, IPv6 and rotating privacy addresses fold into one device).
//! Capped: the least recently seen device is evicted, and counted.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

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
    by_mac: HashMap<Mac, Device>,
    by_ip: HashMap<IpAddr, Mac>,
    cap: usize,
    /// Devices dropped because the table was full.
    pub evicted: u64,
}

impl DeviceTable {
    pub fn new(cap: usize) -> DeviceTable {
        DeviceTable { by_mac: HashMap::new(), by_ip: HashMap::new(), cap: cap.max(1), evicted: 0 }
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

    /// Records that `ip` belongs to `mac` (a neighbour entry or a lease).
    /// Returns true when the address is new for that device.
    pub fn observe(&mut self, mac: Mac, ip: IpAddr, now: u64) -> bool {
        if let Some(old) = self.by_ip.get(&ip).copied() {
            if old != mac {
                // The address moved to another device (DHCP reuse).
                if let Some(d) = self.by_mac.get_mut(&old) {
                    d.addrs.retain(|a| *a != ip);
                }
            }
        }
        if !self.by_mac.contains_key(&mac) && self.by_mac.len() >= self.cap {
            self.evict_oldest();
        }
        let dev = self.by_mac.entry(mac).or_insert_with(|| Device {
            mac,
            addrs: Vec::new(),
            lease_name: None,
            first_seen: now,
            last_seen: now,
            flows: 0,
        });
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

    /// A neighbour entry went away: the address is no longer this device's.
    pub fn forget_addr(&mut self, ip: IpAddr) {
        if let Some(mac) = self.by_ip.remove(&ip) {
            if let Some(d) = self.by_mac.get_mut(&mac) {
                d.addrs.retain(|a| *a != ip);
            }
        }
    }

    pub fn touch(&mut self, mac: Mac, now: u64) {
        if let Some(d) = self.by_mac.get_mut(&mac) {
            d.last_seen = d.last_seen.max(now);
            d.flows += 1;
        }
    }

    pub fn set_lease_name(&mut self, mac: Mac, name: Option<String>) {
        if let Some(d) = self.by_mac.get_mut(&mac) {
            d.lease_name = name;
        }
    }

    fn evict_oldest(&mut self) {
        let Some(victim) = self.by_mac.values().min_by_key(|d| d.last_seen).map(|d| d.mac) else { return };
        if let Some(d) = self.by_mac.remove(&victim) {
            for a in d.addrs {
                self.by_ip.remove(&a);
            }
        }
        self.evicted += 1;
        tracing::warn!(device = %victim, cap = self.cap, evicted = self.evicted, "device table full, evicted least recently seen device");
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
        assert!(t.observe(mac(1), ip("192.168.1.23"), 1));
        assert!(t.observe(mac(1), ip("2001:db8::23"), 2));
        assert!(t.observe(mac(1), ip("2001:db8::beef"), 3));
        assert!(!t.observe(mac(1), ip("192.168.1.23"), 4));
        assert_eq!(t.len(), 1);
        assert_eq!(t.mac_of(ip("2001:db8::beef")), Some(mac(1)));
        assert_eq!(t.get(mac(1)).unwrap().addrs[0], ip("192.168.1.23"));
        assert_eq!(t.get(mac(1)).unwrap().last_seen, 4);
    }

    #[test]
    fn address_moves_between_devices() {
        let mut t = DeviceTable::new(8);
        t.observe(mac(1), ip("192.168.1.5"), 1);
        t.observe(mac(2), ip("192.168.1.5"), 2);
        assert_eq!(t.mac_of(ip("192.168.1.5")), Some(mac(2)));
        assert!(t.get(mac(1)).unwrap().addrs.is_empty());
    }

    #[test]
    fn caps_devices_and_addresses() {
        let mut t = DeviceTable::new(2);
        t.observe(mac(1), ip("192.168.1.1"), 1);
        t.observe(mac(2), ip("192.168.1.2"), 2);
        t.observe(mac(3), ip("192.168.1.3"), 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.evicted, 1);
        assert!(t.get(mac(1)).is_none());
        assert_eq!(t.mac_of(ip("192.168.1.1")), None);
        for i in 0..40u16 {
            t.observe(mac(3), IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)), 10);
        }
        assert_eq!(t.get(mac(3)).unwrap().addrs.len(), MAX_ADDRS_PER_DEVICE);
        assert_eq!(t.mac_of(ip("2001:db8::1")), None);
        assert_eq!(t.mac_of(ip("2001:db8::27")), Some(mac(3)));
    }
}

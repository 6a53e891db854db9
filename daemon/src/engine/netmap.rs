//! What is LAN, what is the router, and what is the internet: built from the
//! router's interfaces and addresses (rtnetlink), so that only flows from a
//! watched LAN to the internet are judged (SPEC §2, last paragraph).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::policy::cidr::Cidr;

#[derive(Debug, Default)]
pub struct NetMap {
    lan_names: Vec<String>,
    links: HashMap<u32, String>,
    /// Every address of the router: (ifindex, prefix of the interface, own address).
    addrs: Vec<(u32, Cidr, IpAddr)>,
    /// Derived from the above on every change: every flow asks.
    lan_nets: Vec<Cidr>,
    router_addrs: Vec<IpAddr>,
}

/// Addresses on a router are few; a cap keeps a hostile netlink stream from
/// growing the list.
const MAX_ADDRS: usize = 1024;

impl NetMap {
    pub fn new(lan_names: &[String]) -> NetMap {
        NetMap { lan_names: lan_names.to_vec(), ..NetMap::default() }
    }

    pub fn set_lan_names(&mut self, lan_names: &[String]) {
        self.lan_names = lan_names.to_vec();
        self.derive();
    }

    pub fn link(&mut self, ifindex: u32, name: &str) {
        if self.links.get(&ifindex).map(String::as_str) != Some(name) {
            self.links.insert(ifindex, name.to_string());
            self.derive();
        }
    }

    pub fn link_gone(&mut self, ifindex: u32) {
        self.links.remove(&ifindex);
        self.addrs.retain(|(i, _, _)| *i != ifindex);
        self.derive();
    }

    pub fn addr(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) {
        let Some(net) = Cidr::new(addr, prefix_len) else { return };
        if self.addrs.iter().any(|(i, _, a)| *i == ifindex && *a == addr) || self.addrs.len() >= MAX_ADDRS {
            return;
        }
        self.addrs.push((ifindex, net, addr));
        self.derive();
    }

    pub fn addr_gone(&mut self, ifindex: u32, addr: IpAddr) {
        self.addrs.retain(|(i, _, a)| !(*i == ifindex && *a == addr));
        self.derive();
    }

    fn derive(&mut self) {
        self.lan_nets = self.addrs.iter().filter(|(i, _, _)| self.is_lan_if(*i)).map(|(_, n, _)| *n).collect();
        self.lan_nets.sort_unstable();
        self.lan_nets.dedup();
        self.router_addrs = self.addrs.iter().map(|(_, _, a)| *a).collect();
    }

    pub fn is_lan_if(&self, ifindex: u32) -> bool {
        self.links.get(&ifindex).is_some_and(|n| self.lan_names.iter().any(|l| l == n))
    }

    pub fn lan_ifindexes(&self) -> Vec<u32> {
        self.links.keys().copied().filter(|i| self.is_lan_if(*i)).collect()
    }

    pub fn is_router_addr(&self, ip: IpAddr) -> bool {
        self.router_addrs.contains(&ip)
    }

    /// The watched LAN interface whose prefix holds `ip` (where its
    /// neighbour entry would be).
    pub fn lan_if_of(&self, ip: IpAddr) -> Option<u32> {
        self.addrs.iter().find(|(i, n, _)| n.contains(ip) && self.is_lan_if(*i)).map(|(i, _, _)| *i)
    }

    /// Inside a prefix of a watched LAN interface.
    pub fn is_lan_addr(&self, ip: IpAddr) -> bool {
        self.lan_nets.iter().any(|n| n.contains(ip))
    }

    /// Neither the router, nor a LAN, nor multicast, broadcast, loopback or
    /// link-local: a destination out on the internet.
    pub fn is_internet(&self, ip: IpAddr) -> bool {
        let special = match ip {
            IpAddr::V4(a) => a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_link_local() || a.is_unspecified(),
            IpAddr::V6(a) => {
                a.is_loopback()
                    || a.is_multicast()
                    || a.is_unspecified()
                    || (a.segments()[0] & 0xffc0) == 0xfe80
                    || a.to_ipv4_mapped().is_some()
            }
        };
        !special && !self.is_router_addr(ip) && !self.is_lan_addr(ip)
    }

    pub fn lan_names(&self) -> &[String] {
        &self.lan_names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn map() -> NetMap {
        let mut m = NetMap::new(&["br-lan".to_string()]);
        m.link(3, "br-lan");
        m.link(4, "wan");
        m.addr(3, ip("192.168.1.1"), 24);
        m.addr(3, ip("fd00:1::1"), 64);
        m.addr(4, ip("198.51.100.2"), 24);
        m
    }

    #[test]
    fn tells_lan_router_and_internet_apart() {
        let m = map();
        assert!(m.is_lan_if(3) && !m.is_lan_if(4));
        assert!(m.is_lan_addr(ip("192.168.1.23")));
        assert!(m.is_lan_addr(ip("fd00:1::abcd")));
        assert!(!m.is_lan_addr(ip("198.51.100.7")));
        assert!(m.is_internet(ip("203.0.113.7")));
        assert!(m.is_internet(ip("198.51.100.7")), "WAN neighbours are internet");
        assert!(m.is_internet(ip("2001:db8::7")));
        for not in ["192.168.1.1", "198.51.100.2", "192.168.1.99", "224.0.0.251", "255.255.255.255", "fe80::1", "ff02::fb", "127.0.0.1", "169.254.1.1"] {
            assert!(!m.is_internet(ip(not)), "{not}");
        }
    }

    #[test]
    fn finds_the_lan_interface_of_an_address() {
        let m = map();
        assert_eq!(m.lan_if_of(ip("192.168.1.23")), Some(3));
        assert_eq!(m.lan_if_of(ip("fd00:1::abcd")), Some(3));
        assert_eq!(m.lan_if_of(ip("198.51.100.7")), None, "WAN: not a LAN interface");
        assert_eq!(m.lan_if_of(ip("203.0.113.7")), None);
    }

    #[test]
    fn forgets_addresses_with_their_link() {
        let mut m = map();
        m.link_gone(3);
        assert!(!m.is_lan_addr(ip("192.168.1.23")));
        assert!(m.is_internet(ip("192.168.1.23")));
    }
}

//! A set of address prefixes answering "is this address inside any of
//! them" in O(log n): deny lists hold thousands of CIDRs and every judged
//! flow asks. Prefixes are merged into sorted, disjoint ranges per family.

use std::net::IpAddr;

use crate::policy::cidr::Cidr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Prefixes given (after dedup), for counts.
    prefixes: usize,
}

impl NetSet {
    pub fn new(mut nets: Vec<Cidr>) -> NetSet {
        nets.sort_unstable();
        nets.dedup();
        let prefixes = nets.len();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in nets {
            match c.addr() {
                IpAddr::V4(a) => {
                    let start = u32::from(a);
                    let span = if c.len() == 0 { u32::MAX } else { (1u32 << (32 - c.len() as u32)).wrapping_sub(1) };
                    v4.push((start, start | span));
                }
                IpAddr::V6(a) => {
                    let start = u128::from(a);
                    let span = if c.len() == 0 { u128::MAX } else { (1u128 << (128 - c.len() as u32)).wrapping_sub(1) };
                    v6.push((start, start | span));
                }
            }
        }
        NetSet { v4: merge(v4), v6: merge(v6), prefixes }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => inside(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => inside(&self.v4, u32::from(v4)),
                None => inside(&self.v6, u128::from(a)),
            },
        }
    }

    /// Number of prefixes the set was built from.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Every address of any of `sets` (the DoH endpoints of several lists).
    pub fn union<'a>(sets: impl IntoIterator<Item = &'a NetSet>) -> NetSet {
        let (mut v4, mut v6, mut prefixes) = (Vec::new(), Vec::new(), 0);
        for s in sets {
            v4.extend_from_slice(&s.v4);
            v6.extend_from_slice(&s.v6);
            prefixes += s.prefixes;
        }
        NetSet { v4: merge(v4), v6: merge(v6), prefixes }
    }

    /// The merged, disjoint ranges (first, last address), IPv4 first, each
    /// family in ascending order: what an nft interval set holds.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        let v4 = self.v4.iter().map(|(s, e)| (IpAddr::from(s.to_be_bytes()), IpAddr::from(e.to_be_bytes())));
        let v6 = self.v6.iter().map(|(s, e)| (IpAddr::from(s.to_be_bytes()), IpAddr::from(e.to_be_bytes())));
        v4.chain(v6)
    }
}

impl From<Vec<Cidr>> for NetSet {
    fn from(v: Vec<Cidr>) -> NetSet {
        NetSet::new(v)
    }
}

/// Sorted by start; overlapping or adjacent ranges become one.
fn merge<T: Copy + Ord + num::One>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1 || last.1.succ() == Some(s) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out.shrink_to_fit();
    out
}

fn inside<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|(s, _)| *s <= x);
    i > 0 && ranges[i - 1].1 >= x
}

mod num {
    pub trait One: Sized {
        fn succ(self) -> Option<Self>;
    }
    impl One for u32 {
        fn succ(self) -> Option<u32> {
            self.checked_add(1)
        }
    }
    impl One for u128 {
        fn succ(self) -> Option<u128> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> NetSet {
        NetSet::new(v.iter().map(|s| s.parse().unwrap()).collect())
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn finds_addresses_in_merged_ranges() {
        let s = set(&["203.0.113.0/25", "203.0.113.128/25", "192.0.2.7", "198.51.100.0/24", "198.51.100.5", "2001:db8::/32", "0.0.0.0/32"]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.v4.len(), 4, "{:?}", s.v4);
        for yes in ["203.0.113.0", "203.0.113.255", "192.0.2.7", "198.51.100.77", "2001:db8:ffff::1", "::ffff:192.0.2.7", "0.0.0.0"] {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in ["203.0.114.0", "192.0.2.6", "192.0.2.8", "2001:db9::", "0.0.0.1", "255.255.255.255"] {
            assert!(!s.contains(ip(no)), "{no}");
        }
        assert!(set(&["0.0.0.0/0"]).contains(ip("255.255.255.255")));
        assert!(set(&["::/0"]).contains(ip("ffff::1")));
        assert!(!NetSet::default().contains(ip("1.2.3.4")));
    }

    #[test]
    fn union_merges_and_ranges_list_in_order() {
        let u = NetSet::union([&set(&["9.9.9.9", "1.1.1.0/31"]), &set(&["1.1.1.2/31", "2001:db8::/127"]), &NetSet::default()]);
        assert_eq!(u.len(), 4);
        let r: Vec<(IpAddr, IpAddr)> = u.ranges().collect();
        assert_eq!(
            r,
            [(ip("1.1.1.0"), ip("1.1.1.3")), (ip("9.9.9.9"), ip("9.9.9.9")), (ip("2001:db8::"), ip("2001:db8::1"))]
        );
        assert!(u.contains(ip("1.1.1.3")) && !u.contains(ip("1.1.1.4")));
        assert_eq!(NetSet::union([]).ranges().count(), 0);
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let nets: Vec<Cidr> = (0..(next() % 40))
                .map(|_| Cidr::new(IpAddr::from(((next() as u32) & 0xff0f_ff00).to_be_bytes()), 8 + (next() % 25) as u8).unwrap())
                .collect();
            let s = NetSet::new(nets.clone());
            for _ in 0..50 {
                let a = IpAddr::from(((next() as u32) & 0xff0f_ffff).to_be_bytes());
                assert_eq!(s.contains(a), nets.iter().any(|c| c.contains(a)), "{a} in {nets:?}");
            }
        }
    }
}

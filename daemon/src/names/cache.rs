//! Which DNS names a device resolved to an address: (device, address) →
//! names, learned from snooped DNS answers. Entries expire with the answer's
//! TTL plus a grace period (devices keep using addresses a while after the
//! TTL ran out), and the cache is capped in entries and in name bytes;
//! evictions are counted.

use std::net::IpAddr;
use std::sync::Arc;

use crate::bounded::{BoundedMap, Insert};
use crate::mac::Mac;
use crate::names::trust::Resolver;

/// Names kept per (device, address): a CNAME chain rarely has more.
pub const NAMES_PER_ENTRY: usize = 4;
/// Devices keep connecting to an address after its TTL expired.
pub const GRACE_SECS: u64 = 600;
/// TTLs above this are clamped, so a hostile answer cannot pin an entry.
pub const MAX_TTL_SECS: u64 = 86_400;

/// Kept small (≈ 100 bytes; it is most of the cache's memory): the resolver
/// of each name is one bit (the router's resolver or not) plus the one
/// outside resolver last seen for this address, not a `Resolver` per name.
#[derive(Debug)]
struct Entry {
    names: heapless::Vec<Arc<str>, NAMES_PER_ENTRY>,
    /// Bit i: `names[i]` came from the router's resolver.
    router: u8,
    outside: Option<IpAddr>,
    expires: u64,
}

impl Entry {
    fn via(&self, i: usize) -> Resolver {
        match (self.router & (1 << i) != 0, self.outside) {
            (true, _) | (false, None) => Resolver::Router,
            (false, Some(a)) => Resolver::Outside(a),
        }
    }

    fn set_via(&mut self, i: usize, via: Resolver) {
        match via {
            Resolver::Router => self.router |= 1 << i,
            Resolver::Outside(a) => {
                self.router &= !(1 << i);
                self.outside = Some(a);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.names.iter().map(|n| n.len()).sum()
    }

    /// Adds a name (dropping the oldest when full); returns the bytes freed.
    fn push(&mut self, name: &str, via: Resolver) -> usize {
        let mut freed = 0;
        if self.names.is_full() {
            freed = self.names.remove(0).len();
            self.router >>= 1;
        }
        let i = self.names.len();
        let _ = self.names.push(Arc::from(name));
        self.set_via(i, via);
        freed
    }
}

/// The names a device resolved to one address, with the resolver of each:
/// those of the router's own resolver first (`list[..trusted]`, the only
/// ones that may grant consent), then those of outside resolvers; each
/// group in the order learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub list: Vec<String>,
    /// The resolver of each name of `list`.
    pub via: Vec<Resolver>,
    pub trusted: usize,
}

impl Names {
    /// Names the owner or configuration gave (`explain DEVICE NAME`): trusted.
    pub fn given(list: Vec<String>) -> Names {
        let n = list.len();
        Names { via: vec![Resolver::Router; n], list, trusted: n }
    }

    /// Names kept with a decision (a persisted block, a quarantine): the
    /// first `trusted` from the router's resolver, the rest from an outside
    /// one, whose address was not kept (`outside` stands for it).
    pub fn kept(list: Vec<String>, trusted: usize, outside: IpAddr) -> Names {
        let trusted = trusted.min(list.len());
        let via = (0..list.len()).map(|i| if i < trusted { Resolver::Router } else { Resolver::Outside(outside) }).collect();
        Names { list, via, trusted }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds names not there yet (a block keeps the names that gave it).
    pub fn merge(&mut self, other: &Names) {
        for (n, r) in other.list.iter().zip(&other.via) {
            self.push(n, *r);
        }
    }

    fn push(&mut self, name: &str, via: Resolver) {
        if let Some(i) = self.list.iter().position(|n| n == name) {
            if via.vouches_for_consent() && i >= self.trusted {
                // Also resolved through the router now: move it up.
                let n = self.list.remove(i);
                self.via.remove(i);
                self.list.insert(self.trusted, n);
                self.via.insert(self.trusted, via);
                self.trusted += 1;
            }
            return;
        }
        if via.vouches_for_consent() {
            self.list.insert(self.trusted, name.to_string());
            self.via.insert(self.trusted, via);
            self.trusted += 1;
        } else {
            self.list.push(name.to_string());
            self.via.push(via);
        }
    }
}

#[derive(Debug)]
pub struct NameCache {
    /// Least recently answered first: a flood of names pushes out the
    /// oldest answers, in O(1) each.
    map: BoundedMap<(Mac, IpAddr), Entry>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct NameCacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub evicted: u64,
}

impl NameCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> NameCache {
        let max_entries = max_entries.max(1);
        NameCache { map: BoundedMap::new(max_entries), max_entries, max_bytes: max_bytes.max(256), bytes: 0, evicted: 0 }
    }

    /// Records that `mac` resolved `names` to `addr` with `ttl` seconds,
    /// through `via`.
    pub fn insert(&mut self, mac: Mac, addr: IpAddr, names: &[String], via: Resolver, ttl: u32, now: u64) {
        let expires = now + (ttl as u64).min(MAX_TTL_SECS) + GRACE_SECS;
        if let Some(e) = self.map.get_mut(&(mac, addr)) {
            e.expires = e.expires.max(expires);
            self.map.touch(&(mac, addr));
            let Some(e) = self.map.get_mut(&(mac, addr)) else { return };
            for n in names {
                if let Some(i) = e.names.iter().position(|have| &**have == n.as_str()) {
                    // The router's word on a name outranks an outside resolver's.
                    if via.vouches_for_consent() {
                        e.set_via(i, via);
                    }
                    continue;
                }
                self.bytes -= e.push(n, via);
                self.bytes += n.len();
            }
        } else {
            let mut e = Entry { names: heapless::Vec::new(), router: 0, outside: None, expires };
            for n in names.iter().rev().take(NAMES_PER_ENTRY).rev() {
                self.bytes += n.len();
                e.push(n, via);
            }
            if let Insert::Evicted(_, old) = self.map.insert((mac, addr), e) {
                self.forget(&old);
            }
        }
        while self.bytes > self.max_bytes {
            let Some((_, old)) = self.map.pop_oldest() else { break };
            self.forget(&old);
        }
    }

    /// The names for (device, address) that have not expired.
    pub fn names(&self, mac: Mac, addr: IpAddr, now: u64) -> Names {
        let mut out = Names::default();
        if let Some(e) = self.map.get(&(mac, addr)).filter(|e| e.expires > now) {
            for (i, n) in e.names.iter().enumerate() {
                out.push(n, e.via(i));
            }
        }
        out
    }

    pub fn expire(&mut self, now: u64) {
        let mut freed = 0;
        self.map.retain(|_, e| {
            let keep = e.expires > now;
            if !keep {
                freed += e.bytes();
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Accounts for an entry evicted to make room.
    fn forget(&mut self, e: &Entry) {
        self.bytes -= e.bytes();
        self.evicted += 1;
        if self.evicted.is_power_of_two() {
            tracing::warn!(evicted = self.evicted, max_entries = self.max_entries, max_bytes = self.max_bytes, "DNS name cache full, forgetting the oldest answers");
        }
    }

    pub fn stats(&self) -> NameCacheStats {
        NameCacheStats { entries: self.map.len(), bytes: self.bytes, evicted: self.evicted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([2, 0, 0, 0, 7, 1]);
    const R: Resolver = Resolver::Router;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_names_until_ttl_plus_grace() {
        let mut c = NameCache::new(100, 10_000);
        c.insert(M, ip("203.0.113.7"), &names(&["alias.example.net", "tracking.example.com"]), R, 60, 1000);
        assert_eq!(c.names(M, ip("203.0.113.7"), 1000 + 60 + GRACE_SECS - 1).list, names(&["alias.example.net", "tracking.example.com"]));
        assert!(c.names(M, ip("203.0.113.7"), 1000 + 60 + GRACE_SECS).is_empty());
        assert!(c.names(Mac([2, 0, 0, 0, 7, 2]), ip("203.0.113.7"), 1000).is_empty(), "per device");
        c.expire(1000 + 60 + GRACE_SECS);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().bytes, 0);
    }

    #[test]
    fn router_names_come_first_and_outrank_outside_ones() {
        let mut c = NameCache::new(100, 10_000);
        let out = Resolver::Outside(ip("192.0.2.53"));
        c.insert(M, ip("203.0.113.7"), &names(&["ok.example.org"]), out, 60, 1000);
        c.insert(M, ip("203.0.113.7"), &names(&["cdn.example.net"]), R, 60, 1000);
        let n = c.names(M, ip("203.0.113.7"), 1000);
        assert_eq!((n.list.clone(), n.trusted), (names(&["cdn.example.net", "ok.example.org"]), 1));
        assert_eq!(n.via, [R, out]);
        // The router resolves it too: now it vouches.
        c.insert(M, ip("203.0.113.7"), &names(&["ok.example.org"]), R, 60, 1000);
        assert_eq!(c.names(M, ip("203.0.113.7"), 1000).trusted, 2);
        let mut kept = Names::given(names(&["a.example"]));
        kept.merge(&Names { list: names(&["b.example", "a.example"]), via: vec![out, out], trusted: 0 });
        assert_eq!((kept.list, kept.trusted), (names(&["a.example", "b.example"]), 1));
    }

    #[test]
    fn entries_stay_small() {
        // 32 Ki entries must fit a 128 MB router's budget (see Entry).
        assert!(std::mem::size_of::<Entry>() <= 112, "{}", std::mem::size_of::<Entry>());
    }

    #[test]
    fn merges_and_caps_names_per_entry() {
        let mut c = NameCache::new(100, 10_000);
        for i in 0..10 {
            c.insert(M, ip("203.0.113.7"), &[format!("n{i}.example.com")], R, 60, 1000);
        }
        let got = c.names(M, ip("203.0.113.7"), 1000).list;
        assert_eq!(got.len(), NAMES_PER_ENTRY);
        assert_eq!(got.last().unwrap(), "n9.example.com");
        assert_eq!(c.stats().bytes, got.iter().map(|n| n.len()).sum::<usize>());
    }

    #[test]
    fn caps_entries_and_bytes_and_counts_evictions() {
        let mut c = NameCache::new(10, 100_000);
        for i in 0..50u8 {
            c.insert(M, IpAddr::from([203, 0, 113, i]), &names(&["x.example.com"]), R, i as u32, 1000);
        }
        assert_eq!(c.stats().entries, 10);
        assert_eq!(c.stats().evicted, 40);
        assert!(!c.names(M, ip("203.0.113.49"), 1000).is_empty(), "the newest answers stay");
        assert!(c.names(M, ip("203.0.113.0"), 1000).is_empty(), "the oldest went");
        let mut c = NameCache::new(1000, 300);
        for i in 0..50u8 {
            c.insert(M, IpAddr::from([203, 0, 113, i]), &[format!("{}.example.com", "a".repeat(40))], R, 60, 1000);
        }
        assert!(c.stats().bytes <= 300);
        assert!(c.stats().evicted > 0);
        c.insert(M, ip("203.0.113.1"), &names(&["x"]), R, u32::MAX, 1000);
        assert!(c.names(M, ip("203.0.113.1"), 1000 + MAX_TTL_SECS + GRACE_SECS).is_empty(), "TTL clamped");
    }
}

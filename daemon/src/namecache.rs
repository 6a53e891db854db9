//! Which DNS names a device resolved to an address: (device, address) →
//! names, learned from snooped DNS answers. Entries expire with the answer's
//! TTL plus a grace period (devices keep using addresses a while after the
//! TTL ran out), and the cache is capped in entries and in name bytes;
//! evictions are counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::mac::Mac;

/// Names kept per (device, address): a CNAME chain rarely has more.
pub const NAMES_PER_ENTRY: usize = 4;
/// Devices keep connecting to an address after its TTL expired.
pub const GRACE_SECS: u64 = 600;
/// TTLs above this are clamped, so a hostile answer cannot pin an entry.
pub const MAX_TTL_SECS: u64 = 86_400;

#[derive(Debug)]
struct Entry {
    names: heapless::Vec<Arc<str>, NAMES_PER_ENTRY>,
    expires: u64,
}

#[derive(Debug)]
pub struct NameCache {
    map: HashMap<(Mac, IpAddr), Entry>,
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
        NameCache { map: HashMap::new(), max_entries: max_entries.max(1), max_bytes: max_bytes.max(256), bytes: 0, evicted: 0 }
    }

    /// Records that `mac` resolved `names` to `addr` with `ttl` seconds.
    pub fn insert(&mut self, mac: Mac, addr: IpAddr, names: &[String], ttl: u32, now: u64) {
        let expires = now + (ttl as u64).min(MAX_TTL_SECS) + GRACE_SECS;
        if let Some(e) = self.map.get_mut(&(mac, addr)) {
            e.expires = e.expires.max(expires);
            for n in names {
                if e.names.iter().any(|have| &**have == n.as_str()) {
                    continue;
                }
                if e.names.is_full() {
                    // Keep the newest: drop the oldest name.
                    let old = e.names.remove(0);
                    self.bytes -= old.len();
                }
                self.bytes += n.len();
                let _ = e.names.push(Arc::from(n.as_str()));
            }
        } else {
            let mut e = Entry { names: heapless::Vec::new(), expires };
            for n in names.iter().rev().take(NAMES_PER_ENTRY).rev() {
                self.bytes += n.len();
                let _ = e.names.push(Arc::from(n.as_str()));
            }
            self.map.insert((mac, addr), e);
        }
        if self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            self.make_room(now);
        }
    }

    /// The names for (device, address) that have not expired.
    pub fn names(&self, mac: Mac, addr: IpAddr, now: u64) -> Vec<String> {
        match self.map.get(&(mac, addr)) {
            Some(e) if e.expires > now => e.names.iter().map(|n| n.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn expire(&mut self, now: u64) {
        let mut freed = 0;
        self.map.retain(|_, e| {
            let keep = e.expires > now;
            if !keep {
                freed += e.names.iter().map(|n| n.len()).sum::<usize>();
            }
            keep
        });
        self.bytes -= freed;
    }

    fn make_room(&mut self, now: u64) {
        self.expire(now);
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            // Evict the entry closest to expiry: the least useful one.
            let Some(k) = self.map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k) else { break };
            if let Some(e) = self.map.remove(&k) {
                self.bytes -= e.names.iter().map(|n| n.len()).sum::<usize>();
            }
            self.evicted += 1;
            if self.evicted.is_power_of_two() {
                tracing::warn!(evicted = self.evicted, max_entries = self.max_entries, max_bytes = self.max_bytes, "DNS name cache full, evicting");
            }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_names_until_ttl_plus_grace() {
        let mut c = NameCache::new(100, 10_000);
        c.insert(M, ip("203.0.113.7"), &names(&["alias.example.net", "tracking.example.com"]), 60, 1000);
        assert_eq!(c.names(M, ip("203.0.113.7"), 1000 + 60 + GRACE_SECS - 1), names(&["alias.example.net", "tracking.example.com"]));
        assert!(c.names(M, ip("203.0.113.7"), 1000 + 60 + GRACE_SECS).is_empty());
        assert!(c.names(Mac([2, 0, 0, 0, 7, 2]), ip("203.0.113.7"), 1000).is_empty(), "per device");
        c.expire(1000 + 60 + GRACE_SECS);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().bytes, 0);
    }

    #[test]
    fn merges_and_caps_names_per_entry() {
        let mut c = NameCache::new(100, 10_000);
        for i in 0..10 {
            c.insert(M, ip("203.0.113.7"), &[format!("n{i}.example.com")], 60, 1000);
        }
        let got = c.names(M, ip("203.0.113.7"), 1000);
        assert_eq!(got.len(), NAMES_PER_ENTRY);
        assert_eq!(got.last().unwrap(), "n9.example.com");
        assert_eq!(c.stats().bytes, got.iter().map(|n| n.len()).sum::<usize>());
    }

    #[test]
    fn caps_entries_and_bytes_and_counts_evictions() {
        let mut c = NameCache::new(10, 100_000);
        for i in 0..50u8 {
            c.insert(M, IpAddr::from([203, 0, 113, i]), &names(&["x.example.com"]), i as u32, 1000);
        }
        assert_eq!(c.stats().entries, 10);
        assert_eq!(c.stats().evicted, 40);
        assert!(!c.names(M, ip("203.0.113.49"), 1000).is_empty(), "longest-lived stay");
        let mut c = NameCache::new(1000, 300);
        for i in 0..50u8 {
            c.insert(M, IpAddr::from([203, 0, 113, i]), &[format!("{}.example.com", "a".repeat(40))], 60, 1000);
        }
        assert!(c.stats().bytes <= 300);
        assert!(c.stats().evicted > 0);
        c.insert(M, ip("203.0.113.1"), &names(&["x"]), u32::MAX, 1000);
        assert!(c.names(M, ip("203.0.113.1"), 1000 + MAX_TTL_SECS + GRACE_SECS).is_empty(), "TTL clamped");
    }
}

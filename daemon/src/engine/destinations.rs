//! What each device talked to (`leash destinations DEVICE`): per (device,
//! address) the names, country and AS, first and last seen, bytes up and
//! down, and the verdict. Also the per-destination upload window behind
//! `upload_alert`. Capped per device and in all; evictions are counted and
//! cost O(1).

use crate::hash::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::bounded::{BoundedMap, Put};
use crate::mac::Mac;
use crate::policy::Rule;
use crate::names::trust::Resolver;
use crate::policy::verdict::Verdict;

pub const MAX_PER_DEVICE: usize = 512;
/// A record takes ≈ 250 bytes with its map slot and small strings: 16 Ki of
/// them ≈ 4 MB, what the daemon can spend of its 16 MB under a flood of
/// flows to distinct addresses (64 Ki alone took ≈ 16 MB).
pub const MAX_TOTAL: usize = 16_384;
const NAMES_KEPT: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct DestRecord {
    #[serde(rename = "address")]
    pub addr: IpAddr,
    pub names: Vec<String>,
    /// Which resolver gave each of `names` ("router" or an outside one's address).
    pub resolvers: Vec<Resolver>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub flows: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub verdict: Verdict,
    #[serde(serialize_with = "as_text")]
    pub rule: Rule,
    /// Start of the current upload window and bytes sent in it.
    #[serde(skip)]
    window_start: u64,
    #[serde(skip)]
    window_up: u64,
    #[serde(skip)]
    window_alerted: bool,
}

impl DestRecord {
    fn new(addr: IpAddr, verdict: Verdict, rule: &Rule, now: u64) -> DestRecord {
        DestRecord {
            addr,
            names: Vec::new(),
            resolvers: Vec::new(),
            country: None,
            asn: None,
            first_seen: now,
            last_seen: now,
            flows: 0,
            bytes_up: 0,
            bytes_down: 0,
            verdict,
            rule: rule.clone(),
            window_start: now,
            window_up: 0,
            window_alerted: false,
        }
    }

    /// Makes an evicted record what `new` would, in place: a full device
    /// evicts one on every new destination.
    fn reset(&mut self, addr: IpAddr, verdict: Verdict, rule: &Rule, now: u64) {
        self.addr = addr;
        self.names.clear();
        self.resolvers.clear();
        self.country = None;
        self.asn = None;
        (self.first_seen, self.last_seen, self.flows, self.bytes_up, self.bytes_down) = (now, now, 0, 0, 0);
        self.verdict = verdict;
        self.rule.clone_from(rule);
        (self.window_start, self.window_up, self.window_alerted) = (now, 0, false);
    }
}

/// What a judged flow or answer tells about a destination.
#[derive(Debug, Clone, Default)]
pub struct Seen<'a> {
    pub names: &'a [String],
    /// The resolver of each of `names`.
    pub via: &'a [Resolver],
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

fn as_text<S: serde::Serializer>(r: &Rule, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

/// Per device its records, least recently seen first. When the total is
/// full, the least recently active device gives up its least recently seen
/// record: near enough to a global LRU, at O(1) instead of a scan of all.
#[derive(Debug)]
pub struct Destinations {
    map: HashMap<Mac, BoundedMap<IpAddr, DestRecord>>,
    /// Devices with records, least recently active first.
    order: BoundedMap<Mac, ()>,
    total: usize,
    pub evicted: u64,
}

impl Default for Destinations {
    fn default() -> Self {
        // Every device in `order` holds a record, so it never evicts.
        Destinations { map: HashMap::default(), order: BoundedMap::new(MAX_TOTAL), total: 0, evicted: 0 }
    }
}

impl Destinations {
    pub fn record(&mut self, mac: Mac, addr: IpAddr, seen: &Seen<'_>, verdict: Verdict, rule: &Rule, flow: bool, now: u64) {
        // A new record needs room: in the device's own records when it is
        // at its cap (the put evicts), else in the least recently active
        // device's. Only a full table looks first.
        if self.total >= MAX_TOTAL {
            let dev = self.map.get(&mac);
            let room_here = dev.is_some_and(|d| d.contains_key(&addr) || d.len() >= MAX_PER_DEVICE);
            if !room_here {
                if let Some(victim) = self.order.oldest().map(|(m, _)| *m) {
                    self.evict_from(victim);
                }
            }
        }
        // Then one lookup of the device and one of the address, a record
        // known or new (made the device's most recent).
        let dev = self.map.entry(mac).or_insert_with(|| BoundedMap::new(MAX_PER_DEVICE));
        let (put, rec) = dev.touch_or_put(addr, || DestRecord::new(addr, verdict, rule, now), |r| r.reset(addr, verdict, rule, now));
        if let Some(rec) = rec {
            update(rec, seen, verdict, rule, flow, now);
        }
        match put {
            Put::Added => self.total += 1,
            Put::Evicted => self.evicted_one(),
            Put::Replaced | Put::Refused => {}
        }
        self.order.insert(mac, ());
    }

    fn evict_from(&mut self, mac: Mac) {
        let Some(dev) = self.map.get_mut(&mac) else {
            self.order.remove(&mac);
            return;
        };
        let popped = dev.pop_oldest().is_some();
        if dev.is_empty() {
            self.map.remove(&mac);
            self.order.remove(&mac);
        }
        if popped {
            self.total = self.total.saturating_sub(1);
            self.evicted_one();
        }
    }

    fn evicted_one(&mut self) {
        self.evicted += 1;
        if self.evicted.is_power_of_two() {
            tracing::warn!(evicted = self.evicted, per_device = MAX_PER_DEVICE, total = MAX_TOTAL, "destination table full, forgetting the least recently seen");
        }
    }

    /// Adds bytes of a flow; returns the bytes sent to this destination in
    /// the current window of `interval` seconds when that crossed `limit` for
    /// the first time in the window (the moment to alert).
    pub fn add_bytes(&mut self, mac: Mac, addr: IpAddr, up: u64, down: u64, now: u64, interval: u64, limit: Option<u64>) -> Option<u64> {
        let dev = self.map.get_mut(&mac)?;
        dev.touch(&addr);
        let rec = dev.get_mut(&addr)?;
        rec.bytes_up = rec.bytes_up.saturating_add(up);
        rec.bytes_down = rec.bytes_down.saturating_add(down);
        rec.last_seen = rec.last_seen.max(now);
        self.order.touch(&mac);
        if now >= rec.window_start.saturating_add(interval.max(1)) {
            rec.window_start = now;
            rec.window_up = 0;
            rec.window_alerted = false;
        }
        rec.window_up = rec.window_up.saturating_add(up);
        match limit {
            Some(l) if rec.window_up > l && !rec.window_alerted => {
                rec.window_alerted = true;
                Some(rec.window_up)
            }
            _ => None,
        }
    }

    pub fn get(&self, mac: Mac, addr: IpAddr) -> Option<&DestRecord> {
        self.map.get(&mac)?.get(&addr)
    }

    /// Newest first.
    pub fn of(&self, mac: Mac) -> Vec<DestRecord> {
        let mut v: Vec<DestRecord> = self.map.get(&mac).map(|d| d.values().cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.addr.cmp(&b.addr)));
        v
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// What a judged flow or answer adds to its destination's record.
fn update(rec: &mut DestRecord, seen: &Seen<'_>, verdict: Verdict, rule: &Rule, flow: bool, now: u64) {
    for (i, n) in seen.names.iter().enumerate() {
        let via = seen.via.get(i).copied().unwrap_or(Resolver::Router);
        match rec.names.iter().position(|have| have == n) {
            Some(at) => rec.resolvers[at] = via,
            None => {
                if rec.names.len() >= NAMES_KEPT {
                    rec.names.remove(0);
                    rec.resolvers.remove(0);
                }
                rec.names.push(n.clone());
                rec.resolvers.push(via);
            }
        }
    }
    if let Some(cc) = seen.country {
        rec.country = Some(String::from_utf8_lossy(&cc).into_owned());
    }
    rec.asn = seen.asn.or(rec.asn);
    rec.last_seen = rec.last_seen.max(now);
    rec.verdict = verdict;
    if rec.rule != *rule {
        rec.rule = rule.clone();
    }
    rec.flows += u64::from(flow);
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([2, 0, 0, 0, 7, 1]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_names_geo_and_bytes() {
        let mut d = Destinations::default();
        let names = vec!["tracking.example.com".to_string()];
        d.record(M, ip("203.0.113.7"), &Seen { names: &names, via: &[Resolver::Router], country: Some(*b"CN"), asn: Some(4808) }, Verdict::Alert, &Rule::Unlisted, true, 10);
        d.record(M, ip("203.0.113.7"), &Seen::default(), Verdict::Alert, &Rule::Unlisted, true, 20);
        assert_eq!(d.add_bytes(M, ip("203.0.113.7"), 100, 2000, 21, 3600, None), None);
        let r = &d.of(M)[0];
        assert_eq!((r.first_seen, r.last_seen, r.flows, r.bytes_up, r.bytes_down), (10, 21, 2, 100, 2000));
        assert_eq!(r.names, names);
        assert_eq!((r.country.as_deref(), r.asn), (Some("CN"), Some(4808)));
        assert_eq!(d.add_bytes(M, ip("192.0.2.1"), 1, 1, 21, 3600, None), None, "unknown destination: ignored");
    }

    #[test]
    fn a_reset_record_is_a_new_one() {
        let mut d = Destinations::default();
        let names = vec!["a.example".to_string()];
        d.record(M, ip("203.0.113.7"), &Seen { names: &names, via: &[Resolver::Router], country: Some(*b"CN"), asn: Some(4808) }, Verdict::Block, &Rule::List("x".into()), true, 10);
        d.add_bytes(M, ip("203.0.113.7"), 100, 2000, 21, 3600, Some(1));
        let mut r = d.of(M)[0].clone();
        r.reset(ip("192.0.2.1"), Verdict::Allow, &Rule::Unlisted, 30);
        assert_eq!(format!("{r:?}"), format!("{:?}", DestRecord::new(ip("192.0.2.1"), Verdict::Allow, &Rule::Unlisted, 30)));
    }

    #[test]
    fn upload_limit_fires_once_per_window() {
        let mut d = Destinations::default();
        d.record(M, ip("203.0.113.7"), &Seen::default(), Verdict::Allow, &Rule::Unlisted, true, 0);
        let lim = Some(50_000_000);
        assert_eq!(d.add_bytes(M, ip("203.0.113.7"), 30_000_000, 0, 10, 3600, lim), None);
        assert_eq!(d.add_bytes(M, ip("203.0.113.7"), 30_000_000, 0, 20, 3600, lim), Some(60_000_000));
        assert_eq!(d.add_bytes(M, ip("203.0.113.7"), 30_000_000, 0, 30, 3600, lim), None, "once per window");
        assert_eq!(d.add_bytes(M, ip("203.0.113.7"), 60_000_000, 0, 4000, 3600, lim), Some(60_000_000), "new window");
    }

    #[test]
    fn caps_records_per_device() {
        let mut d = Destinations::default();
        for i in 0..(MAX_PER_DEVICE as u32 + 10) {
            d.record(M, IpAddr::from((0xcb00_7100u32 + i).to_be_bytes()), &Seen::default(), Verdict::Allow, &Rule::Unlisted, true, i as u64);
        }
        assert_eq!(d.of(M).len(), MAX_PER_DEVICE);
        assert_eq!(d.evicted, 10);
        assert_eq!(d.len(), MAX_PER_DEVICE);
    }

    #[test]
    fn caps_records_in_all_by_the_least_recently_active_device() {
        let mut d = Destinations::default();
        let devices = (MAX_TOTAL / MAX_PER_DEVICE) as u32 + 2;
        let mut now = 0;
        for m in 0..devices {
            let mac = Mac([2, 0, 0, 0, (m >> 8) as u8, m as u8]);
            for i in 0..MAX_PER_DEVICE as u32 {
                now += 1;
                d.record(mac, IpAddr::from((0xc600_0000u32 + i).to_be_bytes()), &Seen::default(), Verdict::Allow, &Rule::Unlisted, true, now);
            }
        }
        assert_eq!(d.len(), MAX_TOTAL);
        assert_eq!(d.evicted, 2 * MAX_PER_DEVICE as u64);
        // The first two devices were the least recently active: they went.
        assert!(d.of(Mac([2, 0, 0, 0, 0, 0])).is_empty());
        assert!(d.of(Mac([2, 0, 0, 0, 0, 1])).is_empty());
        assert_eq!(d.of(Mac([2, 0, 0, 0, 0, 2])).len(), MAX_PER_DEVICE);
        let counted: usize = d.map.values().map(|m| m.len()).sum();
        assert_eq!(counted, d.len());
        assert_eq!(d.order.len(), d.map.len());
    }
}

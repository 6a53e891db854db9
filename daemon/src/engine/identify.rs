//! Identifying devices that speak before their neighbour entry is read:
//! what waits for which LAN address (`Waiting`), and when the daemon may ask
//! the kernel about an address (`Lookups`). Pure: no sockets, no clock; the
//! daemon loop carries out what these decide.
//!
//! A flood of flows from addresses the device table does not hold (more
//! neighbours than it holds, or spoofed sources) must cost a bounded amount
//! of kernel work: one lookup per new address, then an exponential backoff
//! per address, under a global budget per second. Reading the whole
//! neighbour table is kept for kernels without single lookups, at most a
//! few times a second.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::bounded::BoundedMap;

/// Items waiting in all, and per address (a device's burst of flows).
pub const MAX_WAITING: usize = 4096;
pub const MAX_WAITING_PER_ADDR: usize = 32;

/// Things (flows, DNS answers) waiting for the device at an address, each
/// with its deadline. When full, the address that got a new item least
/// recently loses its oldest.
#[derive(Debug)]
pub struct Waiting<T> {
    by_addr: BoundedMap<IpAddr, VecDeque<(T, u64)>>,
    items: usize,
    cap: usize,
    per_addr: usize,
    /// Addresses whose items were dropped for room. The conntrack table
    /// still holds those flows: once such an address is identified, they
    /// are owed a judgement from a dump. Spoofed sources, never
    /// identified, owe nothing and cost no dump.
    owed: BoundedMap<IpAddr, ()>,
    /// An owed address was identified since the last recovery.
    owed_found: bool,
    last_recovery: Option<u64>,
}

/// A recovery dump runs at most this often (ms), and only once the waiting
/// room is back under half full, so that a flood that goes on costs one
/// table walk per interval, not one per dropped flow.
pub const RECOVERY_GAP_MS: u64 = 5000;

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Self::new(MAX_WAITING, MAX_WAITING_PER_ADDR)
    }
}

impl<T> Waiting<T> {
    pub fn new(cap: usize, per_addr: usize) -> Self {
        let cap = cap.max(1);
        // Each address holds at least one item: addresses never outnumber items.
        Waiting { by_addr: BoundedMap::new(cap), items: 0, cap, per_addr: per_addr.max(1), owed: BoundedMap::new(cap), owed_found: false, last_recovery: None }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Addresses waited for.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_addr.iter().map(|(a, _)| *a)
    }

    pub fn is_waiting(&self, addr: IpAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    /// Parks `item` until `until`; returns the items dropped to make room
    /// (the caller counts them), oldest first.
    pub fn park(&mut self, addr: IpAddr, item: T, until: u64) -> Vec<(IpAddr, T)> {
        let mut dropped = Vec::new();
        if let Some(q) = self.by_addr.get_mut(&addr) {
            if q.len() >= self.per_addr {
                if let Some((old, _)) = q.pop_front() {
                    self.items -= 1;
                    dropped.push((addr, old));
                }
            }
        }
        while self.items >= self.cap {
            match self.drop_oldest() {
                Some(d) => dropped.push(d),
                None => break,
            }
        }
        for (a, _) in &dropped {
            self.owed.insert(*a, ());
        }
        if !self.by_addr.contains_key(&addr) {
            // Room was made above, so this never evicts.
            self.by_addr.insert(addr, VecDeque::new());
        }
        self.by_addr.touch(&addr);
        if let Some(q) = self.by_addr.get_mut(&addr) {
            q.push_back((item, until));
            self.items += 1;
        }
        dropped
    }

    fn drop_oldest(&mut self) -> Option<(IpAddr, T)> {
        let addr = *self.by_addr.oldest()?.0;
        let q = self.by_addr.get_mut(&addr)?;
        let item = q.pop_front();
        if q.is_empty() {
            self.by_addr.remove(&addr);
        }
        let (item, _) = item?;
        self.items -= 1;
        Some((addr, item))
    }

    /// Whether something was dropped for room from what waited for `addr`.
    pub fn owes(&self, addr: IpAddr) -> bool {
        self.owed.contains_key(&addr)
    }

    /// Whether to judge the whole conntrack table again now (`now` in ms,
    /// monotonic): an address whose flows were dropped unjudged for room
    /// has been identified, the room is under half full and the last
    /// recovery is `RECOVERY_GAP_MS` old. Answers `true` once per debt.
    pub fn recovery_due(&mut self, now: u64) -> bool {
        let quiet = self.items < self.cap / 2;
        let gap = self.last_recovery.map_or(true, |t| now >= t.saturating_add(RECOVERY_GAP_MS) || now < t);
        if !(self.owed_found && quiet && gap) {
            return false;
        }
        self.owed_found = false;
        self.last_recovery = Some(now);
        true
    }

    /// The address's device is known now: everything that waited for it.
    pub fn take(&mut self, addr: IpAddr) -> Vec<T> {
        if self.owed.remove(&addr).is_some() {
            self.owed_found = true;
        }
        let q = self.by_addr.remove(&addr).unwrap_or_default();
        self.items -= q.len();
        q.into_iter().map(|(t, _)| t).collect()
    }

    /// Removes and returns what waited past its deadline. O(waiting): the
    /// daemon calls it once a second.
    pub fn expire(&mut self, now: u64) -> Vec<(IpAddr, T)> {
        let mut out = Vec::new();
        let addrs: Vec<IpAddr> = self.addrs().collect();
        for a in addrs {
            let Some(q) = self.by_addr.get_mut(&a) else { continue };
            let mut keep = VecDeque::with_capacity(q.len());
            for (t, until) in q.drain(..) {
                if now >= until {
                    out.push((a, t));
                } else {
                    keep.push_back((t, until));
                }
            }
            if keep.is_empty() {
                self.by_addr.remove(&a);
            } else {
                *q = keep;
            }
        }
        self.items -= out.len();
        out
    }
}

/// The first wait after a lookup that found nothing, and the longest.
pub const BACKOFF_FIRST_MS: u64 = 1000;
pub const BACKOFF_MAX_MS: u64 = 8000;
/// Single lookups per second in all, and per call (one loop iteration).
pub const LOOKUPS_PER_SEC: u32 = 1000;
pub const LOOKUPS_PER_CALL: usize = 32;
/// Whole-table dumps (kernels without single lookups): at most this often.
pub const DUMP_MIN_GAP_MS: u64 = 20;
pub const DUMPS_PER_SEC: u32 = 4;
/// Addresses whose backoff is remembered (beyond that, the oldest is
/// forgotten: it may be asked about sooner, still within the budget).
pub const MAX_BACKOFFS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    /// Not to be asked about before this (ms).
    next: u64,
    /// The wait after the next miss.
    step: u64,
}

/// What to ask the kernel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Nothing,
    /// Look up these addresses one by one.
    LookUp(Vec<IpAddr>),
    /// Read the whole neighbour table.
    Dump,
}

/// Decides which unidentified addresses may be asked about, and how.
#[derive(Debug)]
pub struct Lookups {
    backoff: BoundedMap<IpAddr, Backoff>,
    /// The current one-second window (ms) and what was spent in it.
    window: u64,
    lookups_in_window: u32,
    dumps_in_window: u32,
    last_dump: Option<u64>,
    /// Single lookups refused by this kernel: dumps instead.
    dumps_only: bool,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups { backoff: BoundedMap::new(MAX_BACKOFFS), window: 0, lookups_in_window: 0, dumps_in_window: 0, last_dump: None, dumps_only: false }
    }
}

impl Lookups {
    /// Of `candidates` (addresses waiting for their device), what to ask
    /// now (`now` in ms, monotonic). Whatever is asked about backs off
    /// until `found` says it was identified: an address that stays unknown
    /// is asked about again after 1 s, 2 s, 4 s, then every 8 s.
    pub fn plan(&mut self, candidates: impl IntoIterator<Item = IpAddr>, now: u64) -> Plan {
        if now >= self.window.saturating_add(1000) || now < self.window {
            self.window = now;
            self.lookups_in_window = 0;
            self.dumps_in_window = 0;
        }
        if self.dumps_only {
            return self.plan_dump(candidates, now);
        }
        let room = (LOOKUPS_PER_SEC.saturating_sub(self.lookups_in_window) as usize).min(LOOKUPS_PER_CALL);
        if room == 0 {
            return Plan::Nothing;
        }
        // Addresses never asked about come first, so that retries of ones
        // that stayed unknown cannot starve new ones.
        let (mut fresh, mut again) = (Vec::new(), Vec::new());
        for a in candidates {
            if fresh.len() >= room {
                break;
            }
            match self.backoff.get(&a) {
                None if !fresh.contains(&a) => fresh.push(a),
                Some(b) if now >= b.next && again.len() < room && !again.contains(&a) => again.push(a),
                _ => {}
            }
        }
        let mut picked = fresh;
        picked.extend(again.into_iter().take(room - picked.len()));
        for a in &picked {
            self.back_off(*a, now);
        }
        self.lookups_in_window += picked.len() as u32;
        if picked.is_empty() {
            Plan::Nothing
        } else {
            Plan::LookUp(picked)
        }
    }

    fn plan_dump(&mut self, candidates: impl IntoIterator<Item = IpAddr>, now: u64) -> Plan {
        let gap_ok = self.last_dump.map_or(true, |t| now >= t.saturating_add(DUMP_MIN_GAP_MS) || now < t);
        if !gap_ok || self.dumps_in_window >= DUMPS_PER_SEC {
            return Plan::Nothing;
        }
        let due: Vec<IpAddr> = candidates.into_iter().filter(|a| self.due(*a, now)).collect();
        if due.is_empty() {
            return Plan::Nothing;
        }
        for a in due {
            self.back_off(a, now);
        }
        self.last_dump = Some(now);
        self.dumps_in_window += 1;
        Plan::Dump
    }

    fn due(&self, a: IpAddr, now: u64) -> bool {
        self.backoff.get(&a).map_or(true, |b| now >= b.next)
    }

    fn back_off(&mut self, a: IpAddr, now: u64) {
        let step = self.backoff.get(&a).map_or(BACKOFF_FIRST_MS, |b| b.step);
        self.backoff.insert(a, Backoff { next: now.saturating_add(step), step: step.saturating_mul(2).min(BACKOFF_MAX_MS) });
    }

    /// The address was identified: a later need asks about it at once.
    pub fn found(&mut self, a: IpAddr) {
        self.backoff.remove(&a);
    }

    /// The kernel cannot look up single entries: dump the table instead.
    pub fn lookups_unsupported(&mut self) {
        self.dumps_only = true;
    }

    pub fn dumps_only(&self) -> bool {
        self.dumps_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from((0x0a4d_0000u32 + n).to_be_bytes())
    }

    #[test]
    fn waiting_items_come_back_by_address() {
        let mut w = Waiting::new(8, 4);
        assert!(w.park(ip(1), "f1", 10).is_empty());
        w.park(ip(1), "f2", 10);
        w.park(ip(2), "d1", 10);
        assert_eq!(w.len(), 3);
        assert!(w.is_waiting(ip(1)));
        assert_eq!(w.take(ip(1)), ["f1", "f2"]);
        assert_eq!(w.take(ip(1)), Vec::<&str>::new());
        assert_eq!(w.len(), 1);
        assert_eq!(w.addrs().collect::<Vec<_>>(), [ip(2)]);
    }

    #[test]
    fn flows_dropped_for_room_are_owed_one_recovery_once_their_device_is_known() {
        let mut w = Waiting::new(4, 4);
        for n in 0..4 {
            assert!(w.park(ip(n), n, 10).is_empty());
        }
        assert!(!w.recovery_due(0), "nothing dropped, nothing owed");
        assert_eq!(w.park(ip(9), 9, 10), vec![(ip(0), 0)]);
        assert!(w.owes(ip(0)));
        for n in 1..4 {
            w.take(ip(n));
        }
        assert!(!w.recovery_due(100), "the address whose flow was dropped is still unknown");
        w.take(ip(0));
        assert!(!w.owes(ip(0)));
        assert!(w.recovery_due(100));
        assert!(!w.recovery_due(200), "once per debt");
        // A new debt soon after waits out the gap.
        for n in 10..15 {
            w.park(ip(n), n, 10);
        }
        for n in 9..15 {
            w.take(ip(n));
        }
        assert!(!w.recovery_due(100 + RECOVERY_GAP_MS / 2));
        assert!(w.recovery_due(100 + RECOVERY_GAP_MS));
    }

    #[test]
    fn a_flood_that_keeps_the_room_full_defers_recovery() {
        let mut w = Waiting::new(4, 4);
        for n in 0..5 {
            w.park(ip(n), n, 10);
        }
        w.take(ip(0));
        assert!(!w.owes(ip(0)));
        assert_eq!(w.len(), 4);
        assert!(!w.recovery_due(0), "full: the flood goes on");
        for n in 1..4 {
            w.take(ip(n));
        }
        assert!(w.recovery_due(0));
    }

    #[test]
    fn spoofed_sources_never_identified_owe_no_dump() {
        let mut w = Waiting::new(4, 2);
        for n in 0..100 {
            w.park(ip(n), n, 10);
        }
        w.expire(10);
        assert!(w.is_empty());
        assert!(!w.recovery_due(100_000));
    }

    #[test]
    fn waiting_is_capped_in_all_and_per_address() {
        let mut w = Waiting::new(4, 2);
        w.park(ip(1), 1, 10);
        w.park(ip(1), 2, 10);
        assert_eq!(w.park(ip(1), 3, 10), [(ip(1), 1)], "per address: the oldest goes");
        w.park(ip(2), 4, 10);
        w.park(ip(3), 5, 10);
        assert_eq!(w.len(), 4);
        // Full: the address least recently parked at (1) loses its oldest.
        assert_eq!(w.park(ip(4), 6, 10), [(ip(1), 2)]);
        assert_eq!(w.park(ip(5), 7, 10), [(ip(1), 3)]);
        assert!(!w.is_waiting(ip(1)));
        assert_eq!(w.len(), 4);
        let mut all: Vec<i32> = w.addrs().flat_map(|a| w_take_copy(&w, a)).collect();
        all.sort();
        assert_eq!(all, [4, 5, 6, 7]);
    }

    fn w_take_copy(w: &Waiting<i32>, a: IpAddr) -> Vec<i32> {
        w.by_addr.get(&a).map(|q| q.iter().map(|(t, _)| *t).collect()).unwrap_or_default()
    }

    #[test]
    fn waiting_expires_by_deadline() {
        let mut w = Waiting::new(16, 16);
        w.park(ip(1), 1, 5);
        w.park(ip(1), 2, 9);
        w.park(ip(2), 3, 5);
        let mut gone = w.expire(5);
        gone.sort();
        assert_eq!(gone, [(ip(1), 1), (ip(2), 3)]);
        assert_eq!(w.len(), 1);
        assert!(!w.is_waiting(ip(2)));
        assert_eq!(w.expire(8), []);
        assert_eq!(w.expire(9), [(ip(1), 2)]);
        assert!(w.is_empty() && w.addrs().next().is_none());
    }

    #[test]
    fn waiting_survives_a_flood() {
        let mut w = Waiting::new(MAX_WAITING, MAX_WAITING_PER_ADDR);
        let mut dropped = 0;
        for i in 0..250_000u32 {
            dropped += w.park(ip(i % 3000), i, 100).len();
        }
        assert_eq!(w.len(), MAX_WAITING);
        assert_eq!(dropped, 250_000 - MAX_WAITING);
        let held: usize = w.addrs().map(|a| w.by_addr.get(&a).map_or(0, |q| q.len())).sum();
        assert_eq!(held, MAX_WAITING);
    }

    #[test]
    fn new_addresses_are_looked_up_once_then_back_off() {
        let mut l = Lookups::default();
        assert_eq!(l.plan([ip(1)], 0), Plan::LookUp(vec![ip(1)]));
        // Still unknown: not again within a second, whatever the traffic.
        for t in [1, 20, 500, 999] {
            assert_eq!(l.plan([ip(1)], t), Plan::Nothing, "at {t} ms");
        }
        assert_eq!(l.plan([ip(1), ip(2)], 999), Plan::LookUp(vec![ip(2)]), "a new address at once");
        assert_eq!(l.plan([ip(1)], 1000), Plan::LookUp(vec![ip(1)]));
        assert_eq!(l.plan([ip(1)], 2999), Plan::Nothing, "then 2 s");
        assert_eq!(l.plan([ip(1)], 3000), Plan::LookUp(vec![ip(1)]));
        assert_eq!(l.plan([ip(1)], 6999), Plan::Nothing, "then 4 s");
        assert_eq!(l.plan([ip(1)], 7000), Plan::LookUp(vec![ip(1)]));
        assert_eq!(l.plan([ip(1)], 14_999), Plan::Nothing, "then 8 s");
        assert_eq!(l.plan([ip(1)], 15_000), Plan::LookUp(vec![ip(1)]));
        assert_eq!(l.plan([ip(1)], 22_999), Plan::Nothing, "8 s at most");
        assert_eq!(l.plan([ip(1)], 23_000), Plan::LookUp(vec![ip(1)]));
        // Found: the next need asks at once.
        l.found(ip(1));
        assert_eq!(l.plan([ip(1)], 23_001), Plan::LookUp(vec![ip(1)]));
    }

    #[test]
    fn lookups_are_budgeted_per_call_and_per_second() {
        let mut l = Lookups::default();
        let mut asked = 0;
        let mut t = 0;
        // 5 000 new addresses offered every millisecond for a second.
        let all: Vec<IpAddr> = (0..5000).map(ip).collect();
        while t < 1000 {
            match l.plan(all.iter().copied(), t) {
                Plan::LookUp(v) => {
                    assert!(v.len() <= LOOKUPS_PER_CALL);
                    asked += v.len();
                }
                Plan::Nothing => {}
                Plan::Dump => panic!("no dumps while lookups work"),
            }
            t += 1;
        }
        assert_eq!(asked, LOOKUPS_PER_SEC as usize);
        // The next second brings a new budget, for addresses not asked yet
        // before those asked a second ago.
        let Plan::LookUp(v) = l.plan(all.iter().copied(), 1000) else { panic!() };
        assert_eq!(v.len(), LOOKUPS_PER_CALL);
        assert!(v.iter().all(|a| !all[..LOOKUPS_PER_SEC as usize].contains(a)), "new ones first: {v:?}");
        // Once every address was asked, the due ones come round again.
        let mut l = Lookups::default();
        l.plan([ip(1), ip(2)], 0);
        assert_eq!(l.plan([ip(1), ip(2), ip(3)], 1000), Plan::LookUp(vec![ip(3), ip(1), ip(2)]));
    }

    #[test]
    fn without_single_lookups_dumps_are_rare() {
        let mut l = Lookups::default();
        l.lookups_unsupported();
        assert!(l.dumps_only());
        let mut dumps = 0;
        // A new unknown address every millisecond for 3 s.
        for t in 0..3000u64 {
            if l.plan([ip(t as u32)], t) == Plan::Dump {
                dumps += 1;
            }
        }
        assert!(dumps <= 3 * DUMPS_PER_SEC as usize, "{dumps}");
        assert!(dumps >= 3);
        // The same unknown address, over and over: one dump, then backoff.
        let mut l = Lookups::default();
        l.lookups_unsupported();
        let dumps = (0..900u64).filter(|t| l.plan([ip(1)], *t) == Plan::Dump).count();
        assert_eq!(dumps, 1);
    }
}

//! The engine: the pure heart of the daemon. It takes what the kernel
//! reports (flows, neighbours, addresses) and what the owner commands, and
//! returns effects (set changes, flows to cut, alert lines, a state to
//! persist) for the adapters to carry out. No sockets, no clock: `now` is
//! passed in (unix seconds), so every decision is unit-tested.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::alert::{Alert, Verb};
use crate::bounded::{BoundedMap, Insert};
use crate::config::Mode;
use crate::destinations::{Destinations, Seen};
use crate::devices::DeviceTable;
use crate::dns::{AddrRecord, DnsAnswer};
use crate::geoip::GeoInfo;
use crate::namecache::{NameCache, Names};
use crate::leases::Lease;
use crate::mac::Mac;
use crate::netmap::NetMap;
use crate::nft::{Elem, SetChange};
use crate::policy::{Judgement, Policy, Rule};
use crate::selector::{Destination, Selector};
use crate::journal::{BlockEntry, Line};
use crate::state::{Quarantine, State, MAX_FIRST_SEEN};
use crate::trust::{self, Provenance, Resolver};
use crate::verdict::Verdict;

/// A block element lives about this long in the kernel; leash renews it
/// (`RENEW_AHEAD` before it runs out) while the policy still gives it, so
/// it only ever expires when leash is gone.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Each block's timeout is shortened by up to this much, by its (device,
/// address): blocks given in one burst neither expire nor renew at once.
pub const BLOCK_STAGGER: u64 = 2 * 3600;
pub const RENEW_AHEAD: u64 = 3600;

/// The timeout of one block element: `BLOCK_TIMEOUT` less its stagger.
pub fn block_timeout(mac: Mac, dst: IpAddr) -> Duration {
    // FNV-1a over the key: stable across restarts, spread evenly.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let addr = match dst {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    for b in mac.0.iter().chain(addr.iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    BLOCK_TIMEOUT - Duration::from_secs(h % BLOCK_STAGGER)
}
pub const MAX_DEVICES: usize = 4096;
pub const MAX_BLOCKS: usize = 65_536;
pub const MAX_SUPPRESS: usize = 16_384;
pub const MAX_NAME_ENTRIES: usize = 32_768;
pub const MAX_NAME_BYTES: usize = 2 << 20;
/// Consents a device may gather by learning.
pub const MAX_LEARNED_PER_DEVICE: usize = 512;
/// Flows whose byte counters are remembered between readings.
pub const MAX_COUNTED: usize = 65_536;

/// A flow in its original direction, as conntrack reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Which existing flows to cut (conntrack entries to delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// This one flow, just judged: deleted by its tuple, no table dump.
    Flow(Flow),
    /// Every flow from these addresses (one device's) to `dst`.
    To { addrs: Vec<IpAddr>, dst: IpAddr },
    /// Every flow of these addresses to or from the internet.
    Device(Vec<IpAddr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Set(SetChange),
    Cut(Cut),
    Log(Alert),
    /// The persisted state changed: write it.
    Persist,
    /// A block given, renewed or lifted: append it to the block journal.
    Journal(Line),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowOutcome {
    /// Not LAN → internet: never judged.
    Ignored,
    /// From a LAN address whose MAC is not known (yet).
    Unidentified,
    /// The device is quarantined already.
    Quarantined,
    Judged(Verdict),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// conntrack NEW events received.
    pub ct_new_events: u64,
    /// Flows read from conntrack dumps (start, resync after lost events).
    pub ct_dumped: u64,
    pub flows_judged: u64,
    pub flows_ignored: u64,
    pub flows_unidentified: u64,
    pub alerts: u64,
    pub alerts_suppressed: u64,
    pub blocks: u64,
    pub quarantines: u64,
    pub events_lost: u64,
    pub resyncs: u64,
    pub flows_cut: u64,
    pub blocks_evicted: u64,
    pub suppress_evicted: u64,
    pub kernel_errors: u64,
    pub dns_answers: u64,
    pub dns_unknown_client: u64,
    pub dns_errors: u64,
    /// DNS answers ignored: not the reply of a flow the device opened to
    /// that resolver (spoofed from the internet, unasked).
    pub dns_unsolicited: u64,
    /// Times the NFLOG queue of DNS answers overran (answers lost).
    pub dns_overruns: u64,
    /// Destinations blocked or quarantined when their DNS answer passed.
    pub dns_judged_deny: u64,
    pub counted_evicted: u64,
    /// Destinations a learning device used beyond its cap of consents.
    pub learn_capped: u64,
    /// Times leash's nftables table was rebuilt after someone else removed
    /// or altered it (or an element write failed).
    pub table_rebuilds: u64,
    /// Whole neighbour tables read (start, recovery, kernels without lookups).
    pub neighbour_dumps: u64,
    /// Single neighbour entries asked for, for addresses of unknown devices.
    pub neighbour_lookups: u64,
    /// Flows and DNS answers that waited for their device and were dropped
    /// for room, or waited in vain until their deadline.
    pub pending_evicted: u64,
    pub pending_expired: u64,
}

#[derive(Debug, Clone)]
struct BlockInfo {
    rule: Rule,
    until: u64,
    /// The names known when it was given: a block given by a name stays
    /// while that name still denies the address, even once the name's
    /// answer has expired from the name cache.
    names: Names,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("no device matches {0:?} (give a MAC, a configured or DHCP name, or an address)")]
    UnknownDevice(String),
    #[error("{0:?} matches more than one device: {1}")]
    Ambiguous(String, String),
    #[error("{0}")]
    BadSelector(String),
    #[error("not a destination (give a DNS name or an address): {0:?}")]
    BadDestination(String),
}

pub struct Engine {
    policy: Policy,
    state: State,
    pub devices: DeviceTable,
    pub net: NetMap,
    /// Blocks in force, least recently given or renewed first.
    blocks: BoundedMap<(Mac, IpAddr), BlockInfo>,
    suppress: BoundedMap<(Mac, Option<IpAddr>, Verb), u64>,
    lease_names: HashMap<Mac, String>,
    names: NameCache,
    pub destinations: Destinations,
    /// Last byte counters read per flow (conntrack id, tuple): up, down.
    counted: BoundedMap<(u32, Flow), (u64, u64)>,
    /// Blocks each device holds, as the block code reports them
    /// (`pin_device`/`unpin_device`): a device with blocks stays in the table.
    block_holds: HashMap<Mac, u32>,
    pub counters: Counters,
    pub started: u64,
}

/// A destination as it is judged: its address and all that is known of it.
#[derive(Debug, Clone)]
struct Target {
    dst: IpAddr,
    names: Names,
    geo: GeoInfo,
}

/// A flow's byte counters as conntrack reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCounters {
    pub id: u32,
    pub orig: Flow,
    /// Bytes in the original direction (device → internet).
    pub up: u64,
    pub down: u64,
}

impl Engine {
    pub fn new(policy: Policy, state: State, now: u64) -> Engine {
        let net = NetMap::new(&policy.config.daemon.lan);
        Engine {
            policy,
            state,
            devices: DeviceTable::new(MAX_DEVICES),
            net,
            blocks: BoundedMap::new(MAX_BLOCKS),
            suppress: BoundedMap::new(MAX_SUPPRESS),
            lease_names: HashMap::new(),
            names: NameCache::new(MAX_NAME_ENTRIES, MAX_NAME_BYTES),
            destinations: Destinations::default(),
            counted: BoundedMap::new(MAX_COUNTED),
            block_holds: HashMap::new(),
            counters: Counters::default(),
            started: now,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    fn monitor(&self) -> bool {
        self.policy.config.daemon.mode == Mode::Monitor
    }

    /// The elements the table must hold from its first packet: the
    /// persisted quarantines.
    pub fn persisted_elements(&self) -> Vec<Elem> {
        let mut out = Vec::new();
        for (mac, q) in &self.state.quarantines {
            out.push(Elem::QuarantineMac(*mac));
            out.extend(q.addrs.iter().map(|a| Elem::QuarantineAddr(*a)));
        }
        out
    }

    /// Every element leash holds now (for a table rebuild on reload).
    pub fn all_elements(&self, now: u64) -> Vec<(Elem, Option<Duration>)> {
        let mut out: Vec<_> = self.persisted_elements().into_iter().map(|e| (e, None)).collect();
        for ((mac, ip), b) in self.blocks.iter() {
            let left = b.until.saturating_sub(now);
            if left > 0 {
                out.push((Elem::Block(*mac, *ip), Some(Duration::from_secs(left))));
            }
        }
        out
    }

    pub fn device_name(&self, mac: Mac) -> Option<&str> {
        self.policy
            .device_config(mac)
            .and_then(|d| d.name.as_deref())
            .or_else(|| self.lease_names.get(&mac).map(String::as_str))
    }

    pub fn is_quarantined(&self, mac: Mac) -> bool {
        self.state.quarantines.contains_key(&mac)
    }

    /// Whether the device table must keep this device whatever floods it:
    /// the owner configured it, it has consents, it is quarantined, or it
    /// holds blocks.
    fn wants_pin(&self, mac: Mac) -> bool {
        self.policy.device_config(mac).is_some()
            || self.state.consents.get(&mac).is_some_and(|c| !c.is_empty())
            || self.is_quarantined(mac)
            || self.block_holds.contains_key(&mac)
    }

    /// Tells the device table what `wants_pin` says now.
    fn refresh_pin(&mut self, mac: Mac) {
        let pinned = self.wants_pin(mac);
        self.devices.pin(mac, pinned);
    }

    /// For the block code: the device gained a block, so it stays in the
    /// device table until `unpin_device` has been called as many times.
    pub fn pin_device(&mut self, mac: Mac) {
        let n = self.block_holds.entry(mac).or_default();
        *n = n.saturating_add(1);
        self.devices.pin(mac, true);
    }

    /// For the block code: the device lost a block (expired, lifted, forgotten).
    pub fn unpin_device(&mut self, mac: Mac) {
        if let Some(n) = self.block_holds.get_mut(&mac) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.block_holds.remove(&mac);
            }
        }
        self.refresh_pin(mac);
    }

    fn learning(&self, mac: Mac, now: u64) -> bool {
        let learn = self.policy.config.defaults.learn.as_secs();
        learn > 0 && self.state.first_seen.get(&mac).is_some_and(|t| now < t.saturating_add(learn))
    }

    // ---- what the kernel reports ----

    /// A neighbour entry (IP ↔ MAC) on interface `ifindex`.
    pub fn on_neighbour(&mut self, ifindex: u32, ip: IpAddr, mac: Option<Mac>, gone: bool, now: u64, out: &mut Vec<Effect>) {
        if !self.net.is_lan_if(ifindex) {
            return;
        }
        let Some(mac) = mac.filter(|m| !m.is_zero() && !m.is_multicast()) else {
            if gone {
                self.devices.forget_addr(ip);
            }
            return;
        };
        if gone {
            self.devices.forget_addr(ip);
            return;
        }
        let pin = self.wants_pin(mac);
        self.devices.observe(mac, ip, now, pin);
        if self.policy.config.defaults.learn.as_secs() > 0 && !self.state.first_seen.contains_key(&mac) {
            if self.state.first_seen.len() >= MAX_FIRST_SEEN {
                if let Some(oldest) = self.state.first_seen.iter().min_by_key(|(_, t)| **t).map(|(m, _)| *m) {
                    self.state.first_seen.remove(&oldest);
                }
            }
            self.state.first_seen.insert(mac, now);
            out.push(Effect::Persist);
        }
        // A quarantined device that shows up with a new address: drop inbound to it too.
        if let Some(q) = self.state.quarantines.get_mut(&mac) {
            if q.addrs.insert(ip) {
                out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineAddr(ip), timeout: None }));
                out.push(Effect::Persist);
            }
        }
    }

    pub fn set_leases(&mut self, leases: &[Lease], now: u64) {
        self.lease_names = crate::leases::names(leases);
        for l in leases {
            if self.net.is_lan_addr(l.ip) || self.devices.get(l.mac).is_some() {
                let pin = self.wants_pin(l.mac);
                self.devices.observe(l.mac, l.ip, now, pin);
            }
        }
        for (mac, name) in &self.lease_names {
            self.devices.set_lease_name(*mac, Some(name.clone()));
        }
    }

    /// Whether a flow is LAN → internet, and from which device.
    pub fn classify(&self, flow: &Flow) -> Result<Mac, FlowOutcome> {
        if !self.net.is_internet(flow.dst) {
            return Err(FlowOutcome::Ignored);
        }
        match self.devices.mac_of(flow.src) {
            Some(mac) => Ok(mac),
            None if self.net.is_lan_addr(flow.src) => Err(FlowOutcome::Unidentified),
            None => Err(FlowOutcome::Ignored),
        }
    }

    /// Everything known of a destination for one device right now.
    fn target(&self, mac: Mac, dst: IpAddr, now: u64) -> Target {
        Target { dst, names: self.names.names(mac, dst, now), geo: self.policy.geo.lookup(dst) }
    }

    fn judge(&self, mac: Mac, t: &Target) -> Judgement {
        let d = Destination { addr: Some(t.dst), names: &t.names.list, trusted: t.names.trusted, country: t.geo.country, asn: t.geo.asn };
        self.policy.judge(mac, self.granted(mac), &d)
    }

    fn remember(&mut self, mac: Mac, t: &Target, j: &Judgement, flow: bool, now: u64) {
        let seen = Seen { names: &t.names.list, via: &t.names.via, country: t.geo.country, asn: t.geo.asn };
        self.destinations.record(mac, t.dst, &seen, j.verdict, &j.rule, flow, now);
    }

    /// A new flow (conntrack NEW event, or an entry found by a dump).
    pub fn on_flow(&mut self, flow: &Flow, now: u64, out: &mut Vec<Effect>) -> FlowOutcome {
        let mac = match self.classify(flow) {
            Ok(mac) => mac,
            Err(o) => {
                match o {
                    FlowOutcome::Unidentified => self.counters.flows_unidentified += 1,
                    _ => self.counters.flows_ignored += 1,
                }
                return o;
            }
        };
        self.devices.touch(mac, now);
        self.counters.flows_judged += 1;
        if self.is_quarantined(mac) {
            // Its packets are dropped already; a flow seen now predates the
            // quarantine (a dump) or slipped in before it: cut it.
            if !self.monitor() {
                out.push(Effect::Cut(Cut::Flow(*flow)));
            }
            return FlowOutcome::Quarantined;
        }
        if self.blocks.contains_key(&(mac, flow.dst)) {
            // A flow got past the set: its element is missing from the
            // kernel (a dropped packet never makes a conntrack entry). Put
            // it back, renewed.
            self.renew_block(mac, flow.dst, now, out);
            out.push(Effect::Cut(Cut::Flow(*flow)));
            return FlowOutcome::Judged(Verdict::Block);
        }
        let t = self.target(mac, flow.dst, now);
        let j = self.judge(mac, &t);
        let verdict = j.verdict;
        if verdict > Verdict::Allow && self.learning(mac, now) {
            self.learn(mac, &t, flow, now, out);
            return FlowOutcome::Judged(Verdict::Allow);
        }
        self.remember(mac, &t, &j, true, now);
        self.carry_out(mac, &t, Some(flow), j, now, out);
        FlowOutcome::Judged(verdict)
    }

    /// Whether a snooped answer counts (SPEC §2 "Which answers count"):
    /// only a reply of a flow the device itself opened to that resolver.
    /// `None`: unsolicited (spoofed, unasked), counted and ignored.
    pub fn vouch(&mut self, a: &DnsAnswer, p: &Provenance) -> Option<Resolver> {
        match trust::vouch(a, p) {
            Ok(r) => Some(r),
            Err(why) => {
                self.counters.dns_unsolicited += 1;
                if self.counters.dns_unsolicited.is_power_of_two() {
                    tracing::warn!(client = %a.client, server = %a.server, reason = %why, unsolicited = self.counters.dns_unsolicited, "DNS answer nobody asked for ignored");
                }
                None
            }
        }
    }

    /// A DNS answer that crossed the router, sent to `client` by `via`
    /// (already vouched for): remember the names, and put a block or
    /// quarantine in place before the device's first packet to a denied
    /// address. Returns false, judging nothing, when the client's MAC is
    /// not known (yet): the caller learns the neighbours and tries again.
    pub fn on_dns(&mut self, client: IpAddr, records: &[AddrRecord], via: Resolver, now: u64, out: &mut Vec<Effect>) -> bool {
        let Some(mac) = self.devices.mac_of(client) else {
            return false;
        };
        self.counters.dns_answers += 1;
        for r in records {
            if !self.net.is_internet(r.addr) {
                continue;
            }
            self.names.insert(mac, r.addr, &r.names, via, r.ttl, now);
            if self.is_quarantined(mac) || self.blocks.contains_key(&(mac, r.addr)) || self.learning(mac, now) {
                continue;
            }
            let t = self.target(mac, r.addr, now);
            let j = self.judge(mac, &t);
            if j.verdict >= Verdict::Block {
                self.counters.dns_judged_deny += 1;
                self.remember(mac, &t, &j, false, now);
                self.carry_out(mac, &t, None, j, now, out);
            }
        }
        true
    }

    /// Byte counters of a flow (a periodic dump, or its DESTROY event):
    /// accounts the bytes since the last reading to its destination and
    /// raises the upload alert of the device's profile.
    pub fn on_counters(&mut self, c: &FlowCounters, destroyed: bool, now: u64, out: &mut Vec<Effect>) {
        let Ok(mac) = self.classify(&c.orig) else { return };
        let key = (c.id, c.orig);
        let (up, down) = if destroyed {
            match self.counted.remove(&key) {
                Some(last) => (c.up.saturating_sub(last.0), c.down.saturating_sub(last.1)),
                None => (c.up, c.down),
            }
        } else {
            // The flow least recently read goes when full: its next reading
            // counts from zero again, so bytes are counted at least once.
            match self.counted.insert(key, (c.up, c.down)) {
                Insert::Replaced(last) => (c.up.saturating_sub(last.0), c.down.saturating_sub(last.1)),
                Insert::Evicted(..) => {
                    self.counters.counted_evicted += 1;
                    if self.counters.counted_evicted.is_power_of_two() {
                        tracing::warn!(cap = MAX_COUNTED, evicted = self.counters.counted_evicted, "flow counter table full, forgot the flow read longest ago");
                    }
                    (c.up, c.down)
                }
                Insert::Added | Insert::Refused(..) => (c.up, c.down),
            }
        };
        let limit = self.policy.profile_of(mac).upload_alert;
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        let consented = self.destinations.get(mac, c.orig.dst).is_some_and(|r| matches!(r.rule, Rule::Consent(_)));
        let limit = if consented { None } else { limit };
        if let Some(sent) = self.destinations.add_bytes(mac, c.orig.dst, up, down, now, interval, limit) {
            let t = self.target(mac, c.orig.dst, now);
            let profile = self.policy.profile_of(mac).name.clone();
            let a = self
                .flow_alert(Verb::Alert, mac, &t, Some(&c.orig))
                .field("bytes_up", sent)
                .field("rule", "upload_alert")
                .field("profile", profile);
            self.counters.alerts += 1;
            out.push(Effect::Log(a));
        }
    }

    fn granted(&self, mac: Mac) -> impl Iterator<Item = &Selector> {
        self.state.consents.get(&mac).into_iter().flatten()
    }

    /// Trust on first use: the destination becomes a consent, by the name
    /// the device resolved when there is one (addresses of a service move),
    /// else by address. Capped per device, since a learning device decides
    /// how many it makes.
    fn learn(&mut self, mac: Mac, t: &Target, flow: &Flow, now: u64, out: &mut Vec<Effect>) {
        // Only a name the router's resolver gave may become a consent.
        let sel = match t.names.list[..t.names.trusted].first() {
            Some(n) => Selector::Domain { name: n.clone(), exact: true },
            None => Selector::Net(crate::cidr::Cidr::host(flow.dst)),
        };
        let consents = self.state.consents.entry(mac).or_default();
        if consents.len() >= MAX_LEARNED_PER_DEVICE && !consents.contains(&sel) {
            self.counters.learn_capped += 1;
            if self.counters.learn_capped.is_power_of_two() {
                tracing::warn!(device = %mac, cap = MAX_LEARNED_PER_DEVICE, capped = self.counters.learn_capped, "device has too many consents to learn more; allowed, not remembered");
            }
            return;
        }
        if consents.insert(sel.clone()) {
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.flow_alert(Verb::Learned, mac, t, Some(flow)).field("consent", &sel);
            self.log(mac, Some(flow.dst), a, now, out);
        }
    }

    /// The alert line's fields in SPEC §5 order (rule and profile follow).
    fn flow_alert(&self, verb: Verb, mac: Mac, t: &Target, flow: Option<&Flow>) -> Alert {
        let ip = flow.map(|f| f.src).or_else(|| self.devices.get(mac).and_then(|d| d.addrs.first().copied()));
        let mut a = Alert::new(verb)
            .field("device", mac)
            .opt("name", self.device_name(mac))
            .opt("ip", ip)
            .field("dst", t.dst)
            .opt("host", t.names.list.first())
            .opt("country", t.geo.country.map(|c| String::from_utf8_lossy(&c).into_owned()))
            .opt("asn", t.geo.asn);
        if let Some(f) = flow {
            a = a.field("proto", proto_name(f.proto));
            if f.dport != 0 && matches!(f.proto, 6 | 17 | 132 | 136) {
                a = a.field("dport", f.dport);
            }
        }
        a
    }

    /// An owner's command about a device (no destination).
    fn device_alert(&self, verb: Verb, mac: Mac) -> Alert {
        Alert::new(verb)
            .field("device", mac)
            .opt("name", self.device_name(mac))
            .opt("ip", self.devices.get(mac).and_then(|d| d.addrs.first()))
    }

    /// Logs unless the same (device, destination, verb) was logged within
    /// `alert_interval`.
    fn log(&mut self, mac: Mac, dst: Option<IpAddr>, alert: Alert, now: u64, out: &mut Vec<Effect>) {
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        let key = (mac, dst, alert.verb);
        if let Some(last) = self.suppress.get(&key) {
            if now < last.saturating_add(interval) {
                self.counters.alerts_suppressed += 1;
                return;
            }
        }
        if self.suppress.len() >= MAX_SUPPRESS {
            // Entries are in the order they were logged: an expired head goes
            // first, uncounted, since forgetting it loses nothing.
            self.prune_suppress(now);
        }
        if let Insert::Evicted(..) = self.suppress.insert(key, now) {
            self.counters.suppress_evicted += 1;
            if self.counters.suppress_evicted.is_power_of_two() {
                tracing::warn!(cap = MAX_SUPPRESS, evicted = self.counters.suppress_evicted, "alert suppression table full, forgot the oldest entry");
            }
        }
        self.counters.alerts += 1;
        out.push(Effect::Log(alert));
    }

    fn carry_out(&mut self, mac: Mac, t: &Target, flow: Option<&Flow>, j: Judgement, now: u64, out: &mut Vec<Effect>) {
        let verb = match (j.verdict, self.monitor()) {
            (Verdict::Allow, _) => return,
            (Verdict::Alert, _) => Verb::Alert,
            (Verdict::Block, false) => Verb::Block,
            (Verdict::Block, true) => Verb::WouldBlock,
            (Verdict::Quarantine, false) => Verb::Quarantine,
            (Verdict::Quarantine, true) => Verb::WouldQuarantine,
        };
        match verb {
            Verb::Block => {
                self.add_block(mac, t.dst, j.rule.clone(), t.names.clone(), now, out);
                let cut = match flow {
                    Some(f) => Cut::Flow(*f),
                    None => Cut::To { addrs: self.device_addrs(mac, None), dst: t.dst },
                };
                out.push(Effect::Cut(cut));
            }
            Verb::Quarantine => {
                self.quarantine(mac, j.rule.clone(), Some(t), now, flow, out);
            }
            _ => {}
        }
        let alert = self.flow_alert(verb, mac, t, flow).field("rule", &j.rule).field("profile", &j.profile);
        self.log(mac, Some(t.dst), alert, now, out);
    }

    fn device_addrs(&self, mac: Mac, flow: Option<&Flow>) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self.devices.get(mac).map(|d| d.addrs.clone()).unwrap_or_default();
        if let Some(f) = flow {
            if !addrs.contains(&f.src) {
                addrs.push(f.src);
            }
        }
        addrs
    }

    fn add_block(&mut self, mac: Mac, dst: IpAddr, rule: Rule, names: Names, now: u64, out: &mut Vec<Effect>) {
        self.keep_block((mac, dst), BlockInfo { rule, until: 0, names }, out);
        self.counters.blocks += 1;
        self.renew_block(mac, dst, now, out);
    }

    /// Puts a block in the table of blocks, keeping the device pinned for
    /// each block it has. At the cap the least recently given or renewed
    /// block is forgotten (counted): its element still drops until its own
    /// timeout, it is just not renewed or journalled any longer.
    fn keep_block(&mut self, key: (Mac, IpAddr), b: BlockInfo, out: &mut Vec<Effect>) {
        match self.blocks.insert(key, b) {
            Insert::Added => self.pin_device(key.0),
            Insert::Replaced(_) => {}
            Insert::Evicted((mac, addr), _) => {
                self.pin_device(key.0);
                self.unpin_device(mac);
                out.push(Effect::Journal(Line::Remove { mac, addr }));
                self.counters.blocks_evicted += 1;
                if self.counters.blocks_evicted.is_power_of_two() {
                    tracing::warn!(cap = MAX_BLOCKS, evicted = self.counters.blocks_evicted, "block table full, forgot the least recently given block (its element expires by itself)");
                }
            }
            // Blocks are never pinned: unreachable, but never lose the count.
            Insert::Refused(..) => self.counters.blocks_evicted += 1,
        }
    }

    /// (Re)installs a block's element with a fresh timeout, journalled.
    fn renew_block(&mut self, mac: Mac, dst: IpAddr, now: u64, out: &mut Vec<Effect>) {
        let timeout = block_timeout(mac, dst);
        let Some(b) = self.blocks.get_mut(&(mac, dst)) else { return };
        b.until = now + timeout.as_secs();
        self.blocks.touch(&(mac, dst));
        let Some(b) = self.blocks.get(&(mac, dst)) else { return };
        out.push(Effect::Journal(Line::Add(block_entry(mac, dst, b))));
        out.push(Effect::Set(SetChange::Add { elem: Elem::Block(mac, dst), timeout: Some(timeout) }));
    }

    fn lift_block(&mut self, mac: Mac, dst: IpAddr, out: &mut Vec<Effect>) {
        if self.blocks.remove(&(mac, dst)).is_some() {
            self.unpin_device(mac);
            out.push(Effect::Journal(Line::Remove { mac, addr: dst }));
            out.push(Effect::Set(SetChange::Delete(Elem::Block(mac, dst))));
        }
    }

    /// The persisted blocks (from the journal) back in memory at start;
    /// their elements go into the table before anything is judged.
    pub fn restore_blocks(&mut self, entries: impl IntoIterator<Item = BlockEntry>, now: u64) -> usize {
        let mut n = 0;
        for e in entries.into_iter().filter(|e| e.until > now) {
            let Ok(rule) = e.rule.parse::<Rule>() else {
                tracing::warn!(device = %e.mac, dst = %e.addr, rule = %e.rule, "persisted block with an unreadable rule skipped");
                continue;
            };
            let trusted = e.trusted.min(e.names.len());
            let names = Names {
                via: (0..e.names.len()).map(|i| if i < trusted { Resolver::Router } else { Resolver::Outside(e.addr) }).collect(),
                list: e.names,
                trusted,
            };
            self.keep_block((e.mac, e.addr), BlockInfo { rule, until: e.until, names }, &mut Vec::new());
            n += 1;
        }
        n
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Every block as the journal keeps it (for a compaction).
    pub fn block_entries(&self) -> Vec<BlockEntry> {
        self.blocks.iter().map(|((m, a), b)| block_entry(*m, *a, b)).collect()
    }

    /// `t`: the destination that earned it (none for a manual quarantine),
    /// kept so that the quarantine is judged again when the policy changes.
    fn quarantine(&mut self, mac: Mac, rule: Rule, t: Option<&Target>, now: u64, flow: Option<&Flow>, out: &mut Vec<Effect>) {
        let addrs = self.device_addrs(mac, flow);
        let q = Quarantine {
            since: now,
            rule: rule.to_string(),
            addrs: addrs.iter().copied().collect(),
            dst: t.map(|t| t.dst),
            names: t.map(|t| t.names.list.clone()).unwrap_or_default(),
            names_trusted: t.map_or(0, |t| t.names.trusted),
        };
        out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineMac(mac), timeout: None }));
        for a in &q.addrs {
            out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineAddr(*a), timeout: None }));
        }
        self.state.quarantines.insert(mac, q);
        self.refresh_pin(mac);
        self.counters.quarantines += 1;
        out.push(Effect::Persist);
        out.push(Effect::Cut(Cut::Device(addrs)));
    }

    // ---- what the owner commands ----

    /// DEVICE on the command line: a MAC, a configured or DHCP name, or an address.
    pub fn resolve(&self, device: &str) -> Result<Mac, CommandError> {
        if let Ok(mac) = device.parse::<Mac>() {
            return Ok(mac);
        }
        if let Ok(ip) = device.parse::<IpAddr>() {
            return self.devices.mac_of(ip).ok_or_else(|| CommandError::UnknownDevice(device.to_string()));
        }
        let mut found: Vec<Mac> = self
            .policy
            .config
            .devices
            .iter()
            .filter(|d| d.name.as_deref() == Some(device))
            .map(|d| d.mac)
            .collect();
        if found.is_empty() {
            found = self.lease_names.iter().filter(|(_, n)| n.as_str() == device).map(|(m, _)| *m).collect();
        }
        found.sort();
        found.dedup();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(CommandError::UnknownDevice(device.to_string())),
            many => Err(CommandError::Ambiguous(device.to_string(), many.iter().map(Mac::to_string).collect::<Vec<_>>().join(", "))),
        }
    }

    pub fn consent(&mut self, mac: Mac, sel: Selector, now: u64, out: &mut Vec<Effect>) -> bool {
        let added = self.state.consents.entry(mac).or_default().insert(sel.clone());
        if added {
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.device_alert(Verb::Consent, mac).field("consent", &sel).field("action", "grant");
            out.push(Effect::Log(a));
            self.rejudge(Some(mac), now, out);
        }
        added
    }

    pub fn revoke(&mut self, mac: Mac, sel: &Selector, out: &mut Vec<Effect>) -> bool {
        let removed = self.state.consents.get_mut(&mac).is_some_and(|s| s.remove(sel));
        if removed {
            if self.state.consents.get(&mac).is_some_and(|s| s.is_empty()) {
                self.state.consents.remove(&mac);
            }
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.device_alert(Verb::Consent, mac).field("consent", sel).field("action", "revoke");
            out.push(Effect::Log(a));
        }
        removed
    }

    /// Quarantine by hand. Returns false when it was quarantined already.
    pub fn quarantine_manual(&mut self, mac: Mac, now: u64, out: &mut Vec<Effect>) -> bool {
        if self.is_quarantined(mac) {
            return false;
        }
        self.quarantine(mac, Rule::Manual, None, now, None, out);
        let a = self.device_alert(Verb::Quarantine, mac).field("rule", Rule::Manual).field("profile", &self.policy.profile_of(mac).name);
        out.push(Effect::Log(a));
        self.counters.alerts += 1;
        true
    }

    pub fn release(&mut self, mac: Mac, out: &mut Vec<Effect>) -> bool {
        self.release_as(mac, None, out)
    }

    /// Lifts a quarantine; `because`: the rule that now lets the device
    /// out (a re-judgement), else the owner's command.
    fn release_as(&mut self, mac: Mac, because: Option<&Rule>, out: &mut Vec<Effect>) -> bool {
        let Some(q) = self.state.quarantines.remove(&mac) else { return false };
        self.refresh_pin(mac);
        out.push(Effect::Set(SetChange::Delete(Elem::QuarantineMac(mac))));
        for a in &q.addrs {
            // Another quarantined device may hold the address now (DHCP reuse).
            if !self.state.quarantines.values().any(|o| o.addrs.contains(a)) {
                out.push(Effect::Set(SetChange::Delete(Elem::QuarantineAddr(*a))));
            }
        }
        out.push(Effect::Persist);
        // Forget suppression so that a relapse is reported at once.
        self.suppress.retain(|(m, _, _), _| *m != mac);
        let mut a = self.device_alert(Verb::Release, mac).field("rule", &q.rule);
        if let Some(r) = because {
            let why = if self.monitor() { "monitor".to_string() } else { r.to_string() };
            a = a.field("because", why);
        }
        out.push(Effect::Log(a));
        true
    }

    /// A new configuration (already validated and loaded whole).
    pub fn reload(&mut self, policy: Policy, now: u64, out: &mut Vec<Effect>) {
        self.net.set_lan_names(&policy.config.daemon.lan);
        self.policy = policy;
        // Devices configured, or no longer configured.
        let macs: Vec<Mac> = self.devices.iter().map(|d| d.mac).collect();
        for mac in macs {
            self.refresh_pin(mac);
        }
        self.rejudge(None, now, out);
    }

    /// Judges every block and quarantine again (after a consent, a revoke,
    /// a reload or a mode change) with all that is known of its
    /// destination: the names remembered with the decision and those
    /// cached now, its country and AS. A decision stays while the policy
    /// still gives it; what it no longer gives is lifted.
    fn rejudge(&mut self, only: Option<Mac>, now: u64, out: &mut Vec<Effect>) {
        let monitor = self.monitor();
        let keys: Vec<(Mac, IpAddr)> = self.blocks.iter().map(|(k, _)| *k).filter(|(m, _)| only.map_or(true, |o| o == *m)).collect();
        for (mac, ip) in keys {
            let mut t = self.target(mac, ip, now);
            if let Some(b) = self.blocks.get(&(mac, ip)) {
                t.names.merge(&b.names);
            }
            let j = self.judge(mac, &t);
            if monitor || j.verdict < Verdict::Block {
                self.lift_block(mac, ip, out);
            } else if let Some(b) = self.blocks.get_mut(&(mac, ip)) {
                if b.rule != j.rule || b.names != t.names {
                    b.rule = j.rule;
                    b.names = t.names;
                    out.push(Effect::Journal(Line::Add(block_entry(mac, ip, b))));
                }
            }
        }
        let quarantined: Vec<(Mac, IpAddr)> = self
            .state
            .quarantines
            .iter()
            .filter(|(m, q)| only.is_none_or(|o| o == **m) && q.rule != Rule::Manual.to_string())
            .filter_map(|(m, q)| q.dst.map(|d| (*m, d)))
            .collect();
        for (mac, dst) in quarantined {
            let mut t = self.target(mac, dst, now);
            if let Some(q) = self.state.quarantines.get(&mac) {
                let trusted = q.names_trusted.min(q.names.len());
                t.names.merge(&Names {
                    via: (0..q.names.len()).map(|i| if i < trusted { Resolver::Router } else { Resolver::Outside(dst) }).collect(),
                    list: q.names.clone(),
                    trusted,
                });
            }
            let j = self.judge(mac, &t);
            if !monitor && j.verdict == Verdict::Quarantine {
                continue;
            }
            self.release_as(mac, Some(&j.rule), out);
            // What the policy gives instead (a block, say) takes its place.
            if !monitor && j.verdict == Verdict::Block {
                self.carry_out(mac, &t, None, j, now, out);
            }
        }
    }

    /// Housekeeping: renew the blocks that run out within `RENEW_AHEAD`
    /// and that the policy still gives (lift the others), forget expired
    /// names and stale suppression entries.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Effect>) {
        let due: Vec<(Mac, IpAddr)> = self.blocks.iter().filter(|(_, b)| b.until <= now + RENEW_AHEAD).map(|(k, _)| *k).collect();
        for (mac, ip) in due {
            let mut t = self.target(mac, ip, now);
            if let Some(b) = self.blocks.get(&(mac, ip)) {
                t.names.merge(&b.names);
            }
            let j = self.judge(mac, &t);
            if self.monitor() || j.verdict < Verdict::Block {
                self.lift_block(mac, ip, out);
            } else {
                self.renew_block(mac, ip, now, out);
            }
        }
        self.names.expire(now);
        self.prune_suppress(now);
    }

    /// Forgets expired suppression entries from the oldest on: O(expired).
    /// (After the clock steps back an expired entry may sit behind a live
    /// one for a while; lookups treat it as expired all the same.)
    fn prune_suppress(&mut self, now: u64) {
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        while self.suppress.oldest().is_some_and(|(_, t)| now >= t.saturating_add(interval)) {
            self.suppress.pop_oldest();
        }
    }

    /// Whether a conntrack entry (original and reply direction) belongs to a cut.
    pub fn cut_matches(&self, cut: &Cut, orig: &Flow, reply: Option<&Flow>) -> bool {
        match cut {
            Cut::Flow(f) => f == orig,
            Cut::To { addrs, dst } => addrs.contains(&orig.src) && orig.dst == *dst,
            Cut::Device(addrs) => {
                let out = |from: IpAddr, to: IpAddr| addrs.contains(&from) && self.net.is_internet(to);
                // Outbound: device → internet. Inbound (a port forward): the
                // reply comes from the device, or the original goes to it.
                out(orig.src, orig.dst)
                    || reply.is_some_and(|r| out(r.src, r.dst))
                    || addrs.contains(&orig.dst) && self.net.is_internet(orig.src)
            }
        }
    }

    pub fn explain(&self, mac: Mac, destination: &str, now: u64) -> Result<Explanation, CommandError> {
        let (addr, names, geo) = match destination.parse::<IpAddr>() {
            Ok(ip) => {
                let mut names = self.names.names(mac, ip, now);
                if let Some(b) = self.blocks.get(&(mac, ip)) {
                    names.merge(&b.names);
                }
                (Some(ip), names, self.policy.geo.lookup(ip))
            }
            Err(_) => {
                let n = crate::selector::normalize_name(destination).ok_or_else(|| CommandError::BadDestination(destination.to_string()))?;
                (None, Names::given(vec![n]), GeoInfo::default())
            }
        };
        let d = Destination { addr, names: &names.list, trusted: names.trusted, country: geo.country, asn: geo.asn };
        let j = self.policy.judge(mac, self.granted(mac), &d);
        let quarantine = self.state.quarantines.get(&mac);
        let (verdict, rule) = match quarantine {
            Some(q) => (Verdict::Quarantine, format!("quarantined ({})", q.rule)),
            None => (j.verdict, j.rule.to_string()),
        };
        Ok(Explanation {
            device: mac,
            name: self.device_name(mac).map(str::to_string),
            profile: j.profile,
            destination: destination.to_string(),
            names: names.list,
            resolvers: names.via,
            country: geo.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
            asn: geo.asn,
            verdict,
            rule,
            policy_verdict: j.verdict,
            policy_rule: j.rule.to_string(),
            mode: self.policy.config.daemon.mode,
            blocked_now: addr.is_some_and(|a| self.blocks.contains_key(&(mac, a))),
        })
    }

    pub fn device_reports(&self, now: u64) -> Vec<DeviceReport> {
        let mut macs: Vec<Mac> = self.devices.iter().map(|d| d.mac).collect();
        macs.extend(self.policy.config.devices.iter().map(|d| d.mac));
        macs.extend(self.state.quarantines.keys());
        macs.sort();
        macs.dedup();
        macs.into_iter()
            .map(|mac| {
                let d = self.devices.get(mac);
                let state = if self.is_quarantined(mac) {
                    "quarantined"
                } else if self.learning(mac, now) {
                    "learning"
                } else {
                    "enforced"
                };
                DeviceReport {
                    mac,
                    name: self.device_name(mac).map(str::to_string),
                    vendor: None,
                    addrs: d.map(|d| d.addrs.clone()).unwrap_or_default(),
                    profile: self.policy.profile_of(mac).name.clone(),
                    state,
                    last_seen: d.map(|d| d.last_seen),
                    flows: d.map_or(0, |d| d.flows),
                }
            })
            .collect()
    }

    pub fn status(&self, now: u64) -> Status {
        let quarantine_elements = self.persisted_elements().len();
        Status {
            mode: self.policy.config.daemon.mode,
            uptime: now.saturating_sub(self.started),
            config: self.policy.config.source.display().to_string(),
            devices: self.devices.len(),
            flows_judged: self.counters.flows_judged,
            events_lost: self.counters.events_lost,
            resyncs: self.counters.resyncs,
            rules_in_kernel: self.blocks.len() + quarantine_elements,
            devices_evicted: self.devices.evicted,
            devices_pinned: self.devices.pinned_len(),
            devices_refused: self.devices.refused,
            device_pins_refused: self.devices.pins_refused,
            quarantined: self.state.quarantines.len(),
            blocks_in_kernel: self.blocks.len(),
            quarantine_elements,
            destinations: self.destinations.len(),
            destinations_evicted: self.destinations.evicted,
            name_cache: self.names.stats(),
            counters: self.counters.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub device: Mac,
    pub name: Option<String>,
    pub profile: String,
    pub destination: String,
    /// DNS names the device resolved to this address (or the name asked about).
    pub names: Vec<String>,
    /// Which resolver gave each of `names`: "router" (may grant consent)
    /// or an outside resolver's address (may only deny).
    pub resolvers: Vec<Resolver>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    /// What happens to traffic now (a quarantine overrides the policy).
    pub verdict: Verdict,
    pub rule: String,
    /// What the policy alone says.
    pub policy_verdict: Verdict,
    pub policy_rule: String,
    pub mode: Mode,
    pub blocked_now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub mac: Mac,
    pub name: Option<String>,
    pub vendor: Option<String>,
    #[serde(rename = "addresses")]
    pub addrs: Vec<IpAddr>,
    pub profile: String,
    pub state: &'static str,
    pub last_seen: Option<u64>,
    pub flows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub mode: Mode,
    pub uptime: u64,
    pub config: String,
    pub devices: usize,
    /// The headline figures of SPEC §4; `counters` has them all.
    pub flows_judged: u64,
    pub events_lost: u64,
    pub resyncs: u64,
    /// Set elements leash holds in the kernel (blocks and quarantines).
    pub rules_in_kernel: usize,
    pub devices_evicted: u64,
    /// Devices kept whatever comes (configured, consented, quarantined, blocked).
    pub devices_pinned: usize,
    /// New devices not tracked: the table was full of pinned ones.
    pub devices_refused: u64,
    /// Pins not granted: pinned devices had taken their share of the table.
    pub device_pins_refused: u64,
    pub quarantined: usize,
    pub blocks_in_kernel: usize,
    pub quarantine_elements: usize,
    pub destinations: usize,
    pub destinations_evicted: u64,
    pub name_cache: crate::namecache::NameCacheStats,
    pub counters: Counters,
}

fn block_entry(mac: Mac, addr: IpAddr, b: &BlockInfo) -> BlockEntry {
    BlockEntry { mac, addr, until: b.until, rule: b.rule.to_string(), names: b.names.list.clone(), trusted: b.names.trusted }
}

pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Config, DaemonConfig, Defaults, DeviceConfig, GeoipConfig, Profile};
    use crate::lists::LoadedList;

    const CAM: Mac = Mac([2, 0, 0, 0, 7, 1]);
    const PHONE: Mac = Mac([2, 0, 0, 0, 7, 2]);
    const R: Resolver = Resolver::Router;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config(mode: Mode, denied: Verdict, unlisted: Verdict) -> Config {
        let mut profiles = BTreeMap::new();
        profiles.insert(
            "iot".to_string(),
            Profile { name: "iot".into(), unlisted, denied, deny: vec!["bad".into()], upload_alert: None },
        );
        Config {
            source: "/etc/leash/leash.toml".into(),
            daemon: DaemonConfig {
                mode,
                lan: vec!["br-lan".into()],
                alert_interval: Duration::from_secs(3600),
                dns_nflog_group: 5335,
                keep_on_exit: false,
                leases: "/tmp/dhcp.leases".into(),
                state_dir: "/etc/leash/state".into(),
                socket: "/var/run/leash.sock".into(),
                nft_table: "leash".into(),
                syslog: "/dev/log".into(),
                conntrack_buffer: crate::config::DEFAULT_CONNTRACK_BUFFER,
            },
            geoip: GeoipConfig::default(),
            defaults: Defaults { profile: "iot".into(), learn: Duration::ZERO },
            profiles,
            lists: BTreeMap::new(),
            devices: vec![DeviceConfig { mac: CAM, name: Some("living-room-camera".into()), profile: None, consent: vec!["198.51.100.0/24".parse().unwrap()] }],
        }
    }

    fn engine(mode: Mode, denied: Verdict, unlisted: Verdict) -> Engine {
        let mut lists = BTreeMap::new();
        lists.insert(
            "bad".to_string(),
            LoadedList {
                name: "bad".into(),
                domains: crate::domainset::DomainSet::from_names(["tracking.example.com"]),
                nets: vec!["203.0.113.0/24".parse().unwrap(), "2001:db8:bad::/48".parse().unwrap()].into(),
                selectors: vec![],
                bad_lines: 0,
            },
        );
        let mut e = Engine::new(Policy::new(config(mode, denied, unlisted), lists), State::new(), 1000);
        e.net.link(3, "br-lan");
        e.net.link(4, "wan");
        e.net.addr(3, ip("192.168.7.1"), 24);
        e.net.addr(3, ip("fd00:7::1"), 64);
        e.net.addr(4, ip("192.0.2.1"), 24);
        let mut fx = Vec::new();
        e.on_neighbour(3, ip("192.168.7.11"), Some(CAM), false, 1000, &mut fx);
        e.on_neighbour(3, ip("fd00:7::11"), Some(CAM), false, 1000, &mut fx);
        e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
        assert!(fx.is_empty());
        e
    }

    fn flow(src: &str, dst: &str) -> Flow {
        Flow { src: ip(src), dst: ip(dst), proto: 6, sport: 40000, dport: 443 }
    }

    fn logs(fx: &[Effect]) -> Vec<String> {
        fx.iter().filter_map(|e| if let Effect::Log(a) = e { Some(a.to_string()) } else { None }).collect()
    }

    fn sets(fx: &[Effect]) -> Vec<SetChange> {
        fx.iter().filter_map(|e| if let Effect::Set(s) = e { Some(s.clone()) } else { None }).collect()
    }

    #[test]
    fn denied_destination_quarantines_with_spec_line() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.11", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Quarantine));
        assert_eq!(
            logs(&fx),
            ["QUARANTINE device=02:00:00:00:07:01 name=living-room-camera ip=192.168.7.11 dst=203.0.113.7 proto=tcp dport=443 rule=list:bad profile=iot"]
        );
        let s = sets(&fx);
        assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineMac(CAM), timeout: None }));
        assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("192.168.7.11")), timeout: None }));
        assert!(s.contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("fd00:7::11")), timeout: None }));
        assert!(fx.contains(&Effect::Persist));
        assert!(fx.contains(&Effect::Cut(Cut::Device(vec![ip("fd00:7::11"), ip("192.168.7.11")]))), "{fx:?}");
        assert!(e.is_quarantined(CAM));
        assert_eq!(e.persisted_elements().len(), 3);
        // Later flows of a quarantined device: no new line.
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.11", "203.0.113.8"), 1002, &mut fx), FlowOutcome::Quarantined);
        assert!(logs(&fx).is_empty());
    }

    #[test]
    fn consent_beats_deny_list_and_block_is_per_destination() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        // Configured consent 198.51.100.0/24 for the camera.
        assert_eq!(e.on_flow(&flow("192.168.7.11", "198.51.100.20"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
        assert!(fx.is_empty());
        assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
        assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("203.0.113.7")), timeout: Some(block_timeout(PHONE, ip("203.0.113.7"))) }]);
        assert!(logs(&fx)[0].starts_with("BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=203.0.113.7"));
        assert!(fx.contains(&Effect::Cut(Cut::Flow(flow("192.168.7.12", "203.0.113.7")))));
        // Consent by CLI lifts the block.
        let mut fx = Vec::new();
        assert!(e.consent(PHONE, "203.0.113.7".parse().unwrap(), 1002, &mut fx));
        assert!(sets(&fx).contains(&SetChange::Delete(Elem::Block(PHONE, ip("203.0.113.7")))));
        assert!(logs(&fx)[0].starts_with("CONSENT device=02:00:00:00:07:02"));
        let x = e.explain(PHONE, "203.0.113.7", 1002).unwrap();
        assert_eq!((x.verdict, x.rule.as_str()), (Verdict::Allow, "consent:203.0.113.7"));
        let mut fx = Vec::new();
        assert!(e.revoke(PHONE, &"203.0.113.7".parse().unwrap(), &mut fx));
        assert_eq!(e.explain(PHONE, "203.0.113.7", 1002).unwrap().verdict, Verdict::Block);
    }

    #[test]
    fn monitor_mode_only_alerts_and_suppresses_repeats() {
        let mut e = engine(Mode::Monitor, Verdict::Quarantine, Verdict::Block);
        let mut fx = Vec::new();
        e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx);
        e.on_flow(&flow("192.168.7.12", "192.0.2.77"), 1001, &mut fx);
        let l = logs(&fx);
        assert!(l[0].starts_with("WOULD-QUARANTINE ") && l[0].contains("rule=list:bad"), "{l:?}");
        assert!(l[1].starts_with("WOULD-BLOCK ") && l[1].contains("rule=unlisted"), "{l:?}");
        assert!(sets(&fx).is_empty() && !fx.iter().any(|e| matches!(e, Effect::Cut(_) | Effect::Persist)));
        let mut fx = Vec::new();
        e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1500, &mut fx);
        assert!(fx.is_empty(), "repeat within alert_interval is suppressed");
        e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001 + 3600, &mut fx);
        assert_eq!(logs(&fx).len(), 1, "after alert_interval it is logged again");
    }

    #[test]
    fn lan_router_and_unknown_sources_are_not_judged() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Quarantine);
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.11", "192.168.7.12"), 1001, &mut fx), FlowOutcome::Ignored);
        assert_eq!(e.on_flow(&flow("192.168.7.11", "192.168.7.1"), 1001, &mut fx), FlowOutcome::Ignored);
        assert_eq!(e.on_flow(&flow("192.168.7.11", "224.0.0.251"), 1001, &mut fx), FlowOutcome::Ignored);
        assert_eq!(e.on_flow(&flow("192.0.2.1", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Ignored);
        assert_eq!(e.on_flow(&flow("192.168.7.99", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Unidentified);
        assert!(fx.is_empty());
    }

    #[test]
    fn manual_quarantine_release_and_new_addresses() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        assert!(e.quarantine_manual(PHONE, 1001, &mut fx));
        assert!(!e.quarantine_manual(PHONE, 1001, &mut fx));
        assert!(logs(&fx)[0].starts_with("QUARANTINE device=02:00:00:00:07:02 ip=192.168.7.12 rule=manual profile=iot"), "{:?}", logs(&fx));
        let mut fx = Vec::new();
        e.on_neighbour(3, ip("fd00:7::abcd"), Some(PHONE), false, 1002, &mut fx);
        assert!(sets(&fx).contains(&SetChange::Add { elem: Elem::QuarantineAddr(ip("fd00:7::abcd")), timeout: None }));
        let mut fx = Vec::new();
        assert!(e.release(PHONE, &mut fx));
        let s = sets(&fx);
        assert!(s.contains(&SetChange::Delete(Elem::QuarantineMac(PHONE))));
        assert!(s.contains(&SetChange::Delete(Elem::QuarantineAddr(ip("fd00:7::abcd")))));
        assert!(logs(&fx)[0].starts_with("RELEASE device=02:00:00:00:07:02"));
        assert!(!e.is_quarantined(PHONE));
    }

    #[test]
    fn reload_into_monitor_lifts_blocks() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        e.on_flow(&flow("192.168.7.12", "2001:db8:bad::7"), 1001, &mut fx);
        assert!(sets(&fx).contains(&SetChange::Add { elem: Elem::Block(PHONE, ip("2001:db8:bad::7")), timeout: Some(block_timeout(PHONE, ip("2001:db8:bad::7"))) }));
        let lists = std::mem::take(&mut e.policy.lists);
        let mut fx = Vec::new();
        e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1002, &mut fx);
        assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(PHONE, ip("2001:db8:bad::7")))]);
    }

    #[test]
    fn resolves_devices_by_mac_name_and_address() {
        let e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        assert_eq!(e.resolve("02:00:00:00:07:01"), Ok(CAM));
        assert_eq!(e.resolve("living-room-camera"), Ok(CAM));
        assert_eq!(e.resolve("fd00:7::11"), Ok(CAM));
        assert!(e.resolve("nobody").is_err());
    }

    #[test]
    fn cut_selects_outbound_and_inbound_flows_of_the_device() {
        let e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let all = Cut::Device(vec![ip("192.168.7.11")]);
        let out = flow("192.168.7.11", "203.0.113.7");
        let back = flow("203.0.113.7", "192.168.7.11");
        assert!(e.cut_matches(&all, &out, Some(&back)));
        assert!(e.cut_matches(&all, &back, Some(&out)), "inbound from the WAN");
        assert!(!e.cut_matches(&all, &flow("192.168.7.11", "192.168.7.12"), None), "LAN flows stay");
        let one = Cut::To { addrs: vec![ip("192.168.7.11")], dst: ip("203.0.113.8") };
        assert!(!e.cut_matches(&one, &out, None));
        assert!(e.cut_matches(&Cut::Flow(out), &out, None));
        assert!(!e.cut_matches(&Cut::Flow(out), &back, None));
    }

    #[test]
    fn learning_turns_destinations_into_consents() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Block);
        e.policy.config.defaults.learn = Duration::from_secs(86_400);
        let mut fx = Vec::new();
        let new_dev = Mac([2, 0, 0, 0, 7, 9]);
        e.on_neighbour(3, ip("192.168.7.19"), Some(new_dev), false, 2000, &mut fx);
        assert!(fx.contains(&Effect::Persist));
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.19", "192.0.2.50"), 2001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
        assert!(logs(&fx)[0].starts_with("LEARNED device=02:00:00:00:07:09"), "{:?}", logs(&fx));
        assert_eq!(e.explain(new_dev, "192.0.2.50", 2001).unwrap().verdict, Verdict::Allow);
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.19", "192.0.2.51"), 2000 + 86_400, &mut fx), FlowOutcome::Judged(Verdict::Block));
    }

    #[test]
    fn learning_prefers_names_and_is_capped() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Block);
        e.policy.config.defaults.learn = Duration::from_secs(86_400);
        let dev = Mac([2, 0, 0, 0, 7, 9]);
        let mut fx = Vec::new();
        e.on_neighbour(3, ip("192.168.7.19"), Some(dev), false, 2000, &mut fx);
        e.on_dns(ip("192.168.7.19"), &[AddrRecord { addr: ip("192.0.2.60"), names: vec!["api.example.org".into()], ttl: 60 }], R, 2001, &mut fx);
        e.on_flow(&flow("192.168.7.19", "192.0.2.60"), 2001, &mut fx);
        assert!(e.state().consents[&dev].contains(&"=api.example.org".parse().unwrap()));
        for i in 0..(MAX_LEARNED_PER_DEVICE as u32 + 10) {
            let dst = IpAddr::from((0xc633_0000u32 + i).to_be_bytes());
            assert_eq!(e.on_flow(&Flow { dst, ..flow("192.168.7.19", "192.0.2.1") }, 2002, &mut fx), FlowOutcome::Judged(Verdict::Allow));
        }
        assert_eq!(e.state().consents[&dev].len(), MAX_LEARNED_PER_DEVICE);
        assert_eq!(e.counters.learn_capped, 11);
    }

    fn dns(addr: &str, names: &[&str]) -> AddrRecord {
        AddrRecord { addr: ip(addr), names: names.iter().map(|n| n.to_string()).collect(), ttl: 300 }
    }

    #[test]
    fn denied_name_is_blocked_when_its_answer_passes() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["cdn.example.net", "eu.tracking.example.com"]), dns("192.168.7.5", &["lan.example.com"])], R, 1001, &mut fx);
        assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("192.0.2.99")), timeout: Some(block_timeout(PHONE, ip("192.0.2.99"))) }]);
        assert_eq!(
            logs(&fx),
            ["BLOCK device=02:00:00:00:07:02 ip=192.168.7.12 dst=192.0.2.99 host=cdn.example.net rule=list:bad profile=iot"]
        );
        assert_eq!(e.counters.dns_judged_deny, 1);
        // The device's connection then finds the block in place: no new line.
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.12", "192.0.2.99"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
        assert!(logs(&fx).is_empty());
        // Names are per device: the camera never resolved it.
        let x = e.explain(CAM, "192.0.2.99", 1001).unwrap();
        assert_eq!(x.verdict, Verdict::Allow);
        assert_eq!(e.explain(PHONE, "tracking.example.com", 1001).unwrap().rule, "list:bad");
        let d = e.destinations.of(PHONE);
        assert_eq!(d[0].names, ["cdn.example.net", "eu.tracking.example.com"]);
        // Answers to unknown clients are left to the caller.
        assert!(!e.on_dns(ip("192.168.7.99"), &[dns("192.0.2.98", &["tracking.example.com"])], R, 1001, &mut fx));
    }

    #[test]
    fn conntrack_judging_uses_the_names_the_device_resolved() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
        let mut fx = Vec::new();
        // Consented by name: an allowed answer is only remembered.
        e.consent(PHONE, "=ok.example.org".parse().unwrap(), 1000, &mut fx);
        e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.50", &["ok.example.org"])], R, 1001, &mut fx);
        assert!(sets(&fx).is_empty());
        assert_eq!(e.on_flow(&flow("192.168.7.12", "192.0.2.50"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
        assert_eq!(e.explain(PHONE, "192.0.2.50", 1001).unwrap().rule, "consent:=ok.example.org");
    }

    #[test]
    fn country_and_asn_come_from_the_databases() {
        let dir = std::env::temp_dir().join(format!("leash-engine-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, a) = (dir.join("country.mmdb"), dir.join("asn.mmdb"));
        std::fs::write(&c, crate::geoip::mmdb_writer::test_country_db().unwrap()).unwrap();
        std::fs::write(&a, crate::geoip::mmdb_writer::test_asn_db().unwrap()).unwrap();
        let geo = crate::geoip::GeoIp::open(&crate::config::GeoipConfig { country_db: Some(c), asn_db: Some(a) }).unwrap();
        let mut cfg = config(Mode::Enforce, Verdict::Block, Verdict::Allow);
        cfg.profiles.get_mut("iot").unwrap().deny = vec!["cn".into()];
        let mut lists = BTreeMap::new();
        lists.insert(
            "cn".to_string(),
            LoadedList { name: "cn".into(), domains: Default::default(), nets: Default::default(), selectors: vec!["country:CN".parse().unwrap()], bad_lines: 0 },
        );
        let mut e = Engine::new(Policy::new(cfg, lists).with_geo(geo), State::new(), 1000);
        e.net.link(3, "br-lan");
        e.net.addr(3, ip("192.168.7.1"), 24);
        let mut fx = Vec::new();
        e.on_neighbour(3, ip("192.168.7.12"), Some(PHONE), false, 1000, &mut fx);
        assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Block));
        let l = logs(&fx);
        assert!(l[0].contains(" dst=203.0.113.7 country=CN asn=4808 proto=tcp dport=443 rule=list:cn "), "{l:?}");
        assert_eq!(e.on_flow(&flow("192.168.7.12", "198.51.100.20"), 1001, &mut fx), FlowOutcome::Judged(Verdict::Allow));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn upload_alert_fires_for_unconsented_destinations() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        e.policy.config.profiles.get_mut("iot").unwrap().upload_alert = Some(50_000_000);
        let mut fx = Vec::new();
        let up = flow("192.168.7.12", "192.0.2.60");
        e.on_flow(&up, 1001, &mut fx);
        e.on_counters(&FlowCounters { id: 7, orig: up, up: 30_000_000, down: 1000 }, false, 1010, &mut fx);
        assert!(logs(&fx).is_empty());
        e.on_counters(&FlowCounters { id: 7, orig: up, up: 60_000_000, down: 2000 }, true, 1020, &mut fx);
        assert_eq!(
            logs(&fx),
            ["ALERT device=02:00:00:00:07:02 ip=192.168.7.12 dst=192.0.2.60 proto=tcp dport=443 bytes_up=60000000 rule=upload_alert profile=iot"]
        );
        let d = &e.destinations.of(PHONE)[0];
        assert_eq!((d.bytes_up, d.bytes_down), (60_000_000, 2000), "deltas, not sums of readings");
        // The camera consented to 198.51.100.0/24: no alert however much it sends.
        let mut fx = Vec::new();
        let cam = flow("192.168.7.11", "198.51.100.20");
        e.on_flow(&cam, 1001, &mut fx);
        e.on_counters(&FlowCounters { id: 8, orig: cam, up: 900_000_000, down: 0 }, true, 1020, &mut fx);
        assert!(logs(&fx).is_empty());
    }

    #[test]
    fn an_outside_resolver_can_deny_but_never_grant_consent() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        e.consent(PHONE, "ok.example.org".parse().unwrap(), 1000, &mut fx);
        let outside = Resolver::Outside(ip("192.0.2.53"));
        // The device's own resolver maps the consented name to a denied address.
        let mut fx = Vec::new();
        e.on_dns(ip("192.168.7.12"), &[dns("203.0.113.9", &["ok.example.org"])], outside, 1001, &mut fx);
        assert_eq!(sets(&fx), [SetChange::Add { elem: Elem::Block(PHONE, ip("203.0.113.9")), timeout: Some(block_timeout(PHONE, ip("203.0.113.9"))) }]);
        let x = e.explain(PHONE, "203.0.113.9", 1001).unwrap();
        assert_eq!((x.verdict, x.rule.as_str()), (Verdict::Block, "list:bad"));
        assert_eq!(x.resolvers, [outside]);
        assert_eq!(e.destinations.of(PHONE)[0].resolvers, [outside]);
        // The same name through the router's resolver does grant it.
        let mut fx = Vec::new();
        e.on_dns(ip("192.168.7.12"), &[dns("203.0.113.10", &["ok.example.org"])], R, 1001, &mut fx);
        assert!(sets(&fx).is_empty());
        assert_eq!(e.explain(PHONE, "203.0.113.10", 1001).unwrap().rule, "consent:ok.example.org");
        // And an outside name is no consent for a flow either.
        let mut fx = Vec::new();
        assert_eq!(e.on_flow(&flow("192.168.7.12", "203.0.113.9"), 1002, &mut fx), FlowOutcome::Judged(Verdict::Block));
    }

    #[test]
    fn spoofed_and_unasked_answers_are_ignored_and_counted() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
        let a = DnsAnswer { client: ip("192.168.7.12"), server: ip("192.0.2.53"), proto: 17, client_port: 5000, server_port: 53, qname: "t".into(), records: vec![] };
        let spoofed = Provenance { hook: Some(2), ct_info: Some(2), ct_orig: None };
        assert_eq!(e.vouch(&a, &spoofed), None);
        assert_eq!(e.counters.dns_unsolicited, 1);
        let asked = Provenance { hook: Some(2), ct_info: Some(3), ct_orig: Some(trust::asked_flow(&a)) };
        assert_eq!(e.vouch(&a, &asked), Some(Resolver::Outside(ip("192.0.2.53"))));
        let other = DnsAnswer { client: ip("192.168.7.11"), ..a.clone() };
        assert_eq!(e.vouch(&other, &asked), None, "another device's flow");
        assert_eq!(e.counters.dns_unsolicited, 2);
    }

    #[test]
    fn a_block_given_by_a_name_survives_an_unrelated_consent_and_reload() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["tracking.example.com"])], R, 1001, &mut fx);
        assert_eq!(sets(&fx).len(), 1);
        // The name's answer expires from the cache; the block keeps its names.
        let later = 1001 + 300 + crate::namecache::GRACE_SECS + 1;
        e.tick(later, &mut Vec::new());
        let mut fx = Vec::new();
        e.consent(PHONE, "other.example.net".parse().unwrap(), later, &mut fx);
        assert!(sets(&fx).is_empty(), "an unrelated consent lifts nothing: {fx:?}");
        let lists = std::mem::take(&mut e.policy.lists);
        let mut fx = Vec::new();
        e.reload(Policy::new(config(Mode::Enforce, Verdict::Block, Verdict::Allow), lists), later, &mut fx);
        assert!(sets(&fx).is_empty(), "a reload with the same policy lifts nothing: {fx:?}");
        assert!(e.explain(PHONE, "192.0.2.99", later).unwrap().blocked_now);
        // A consent for that name lifts it; so does a mode change.
        let mut fx = Vec::new();
        e.consent(PHONE, "tracking.example.com".parse().unwrap(), later, &mut fx);
        assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(PHONE, ip("192.0.2.99")))]);
    }

    #[test]
    fn a_reload_that_drops_the_list_lifts_its_blocks_and_quarantines() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
        let mut fx = Vec::new();
        e.on_flow(&flow("192.168.7.11", "203.0.113.7"), 1001, &mut fx);
        assert!(e.is_quarantined(CAM));
        assert_eq!(e.state().quarantines[&CAM].dst, Some(ip("203.0.113.7")));
        // The same policy keeps it.
        let lists = std::mem::take(&mut e.policy.lists);
        let mut fx = Vec::new();
        e.reload(Policy::new(config(Mode::Enforce, Verdict::Quarantine, Verdict::Allow), lists.clone()), 1002, &mut fx);
        assert!(e.is_quarantined(CAM) && fx.is_empty(), "{fx:?}");
        // denied = block now: the quarantine gives way to a block of that destination.
        let mut fx = Vec::new();
        e.reload(Policy::new(config(Mode::Enforce, Verdict::Block, Verdict::Allow), lists.clone()), 1003, &mut fx);
        assert!(!e.is_quarantined(CAM));
        let s = sets(&fx);
        assert!(s.contains(&SetChange::Delete(Elem::QuarantineMac(CAM))), "{s:?}");
        assert!(s.contains(&SetChange::Add { elem: Elem::Block(CAM, ip("203.0.113.7")), timeout: Some(block_timeout(CAM, ip("203.0.113.7"))) }), "{s:?}");
        assert!(logs(&fx).iter().any(|l| l.starts_with("RELEASE device=02:00:00:00:07:01") && l.contains("rule=list:bad because=list:bad")), "{:?}", logs(&fx));
        // Monitor mode: nothing stays enforced.
        let mut fx = Vec::new();
        e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1004, &mut fx);
        assert_eq!(sets(&fx), [SetChange::Delete(Elem::Block(CAM, ip("203.0.113.7")))]);
        // A quarantine by hand stays whatever the policy says.
        let mut fx = Vec::new();
        e.quarantine_manual(PHONE, 1005, &mut fx);
        e.consent(PHONE, "any".parse().unwrap(), 1005, &mut fx);
        assert!(e.is_quarantined(PHONE));
    }

    #[test]
    fn a_consent_lifts_the_quarantine_it_answers() {
        let mut e = engine(Mode::Enforce, Verdict::Quarantine, Verdict::Allow);
        let mut fx = Vec::new();
        e.on_dns(ip("192.168.7.12"), &[dns("192.0.2.99", &["tracking.example.com"])], R, 1001, &mut fx);
        assert!(e.is_quarantined(PHONE));
        let mut fx = Vec::new();
        e.consent(PHONE, "=other.example.com".parse().unwrap(), 1002, &mut fx);
        assert!(e.is_quarantined(PHONE), "an unrelated consent: {fx:?}");
        e.consent(PHONE, "tracking.example.com".parse().unwrap(), 1002, &mut fx);
        assert!(!e.is_quarantined(PHONE));
        assert!(logs(&fx).iter().any(|l| l.starts_with("RELEASE ") && l.contains("because=consent:tracking.example.com")), "{:?}", logs(&fx));
    }

    #[test]
    fn a_flood_of_neighbours_never_evicts_pinned_devices() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        assert!(e.quarantine_manual(PHONE, 1001, &mut fx));
        let tv = Mac([2, 0, 0, 0, 7, 3]);
        e.on_neighbour(3, ip("192.168.7.13"), Some(tv), false, 1001, &mut fx);
        assert!(e.consent(tv, "198.51.100.0/24".parse().unwrap(), 1001, &mut fx));
        let blocked = Mac([2, 0, 0, 0, 7, 4]);
        e.on_neighbour(3, ip("192.168.7.14"), Some(blocked), false, 1001, &mut fx);
        e.pin_device(blocked);
        // CAM is configured; PHONE quarantined; tv consented; `blocked` holds a block.
        e.net.addr(3, ip("10.77.0.1"), 16);
        for i in 0..(MAX_DEVICES as u32 + 1000) {
            let m = Mac([2, 0x77, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            e.on_neighbour(3, IpAddr::from((0x0a4d_0000u32 + i + 2).to_be_bytes()), Some(m), false, 1002 + u64::from(i), &mut fx);
        }
        assert_eq!(e.devices.len(), MAX_DEVICES);
        assert!(e.devices.evicted >= 1000);
        for (m, a) in [(CAM, "192.168.7.11"), (PHONE, "192.168.7.12"), (tv, "192.168.7.13"), (blocked, "192.168.7.14")] {
            assert_eq!(e.devices.mac_of(ip(a)), Some(m), "{m} kept");
        }
        assert_eq!(e.status(2000).devices_pinned, 4);
        // Let go again, each ages out like any other device.
        e.release(PHONE, &mut fx);
        e.revoke(tv, &"198.51.100.0/24".parse().unwrap(), &mut fx);
        e.unpin_device(blocked);
        assert_eq!(e.status(2000).devices_pinned, 1, "the configured camera stays pinned");
        // Unpinned, they are the most recent: a table's worth of new devices pushes them out.
        for i in 0..MAX_DEVICES as u32 {
            let m = Mac([2, 0x78, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            e.on_neighbour(3, IpAddr::from((0x0a4e_0000u32 + i).to_be_bytes()), Some(m), false, 9000, &mut fx);
        }
        for a in ["192.168.7.12", "192.168.7.13", "192.168.7.14"] {
            assert_eq!(e.devices.mac_of(ip(a)), None, "{a} evicted once unpinned");
        }
        assert_eq!(e.devices.mac_of(ip("192.168.7.11")), Some(CAM));
    }

    #[test]
    fn suppression_and_counters_stay_bounded_without_scans() {
        let mut e = engine(Mode::Monitor, Verdict::Block, Verdict::Block);
        let mut fx = Vec::new();
        // Distinct destinations, each logged once: the table fills, then the oldest go.
        for i in 0..(MAX_SUPPRESS as u32 + 100) {
            let dst = IpAddr::from((0xc633_0000u32 + i).to_be_bytes());
            e.on_flow(&Flow { dst, ..flow("192.168.7.12", "192.0.2.1") }, 1001, &mut fx);
        }
        assert_eq!(e.suppress.len(), MAX_SUPPRESS);
        assert_eq!(e.counters.suppress_evicted, 100);
        // The first destination was forgotten: logged again; the last is still suppressed.
        let mut fx = Vec::new();
        e.on_flow(&Flow { dst: IpAddr::from(0xc633_0000u32.to_be_bytes()), ..flow("192.168.7.12", "192.0.2.1") }, 1002, &mut fx);
        assert_eq!(logs(&fx).len(), 1);
        let last = IpAddr::from((0xc633_0000u32 + MAX_SUPPRESS as u32 + 99).to_be_bytes());
        e.on_flow(&Flow { dst: last, ..flow("192.168.7.12", "192.0.2.1") }, 1002, &mut fx);
        assert_eq!(logs(&fx).len(), 1);
        // Expired entries are forgotten uncounted.
        e.tick(1001 + 3600, &mut Vec::new());
        assert_eq!(e.suppress.len(), 1, "only the line logged at 1002 is live");
        assert_eq!(e.counters.suppress_evicted, 101, "the re-logged one evicted one more, the expired none");

        let up = flow("192.168.7.12", "192.0.2.60");
        for id in 0..(MAX_COUNTED as u32 + 10) {
            e.on_counters(&FlowCounters { id, orig: up, up: 10, down: 0 }, false, 1010, &mut fx);
        }
        assert_eq!(e.counters.counted_evicted, 10);
        // A flow read before is accounted by its delta, and forgotten when it ends.
        e.on_counters(&FlowCounters { id: MAX_COUNTED as u32 + 9, orig: up, up: 15, down: 0 }, true, 1011, &mut fx);
        assert_eq!(e.counted.len(), MAX_COUNTED - 1);
    }

    #[test]
    fn a_device_with_blocks_is_pinned_until_its_last_block_goes() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        assert!(!e.devices.is_pinned(PHONE));
        e.on_flow(&flow("192.168.7.12", "203.0.113.7"), 1001, &mut fx);
        e.on_flow(&flow("192.168.7.12", "203.0.113.9"), 1001, &mut fx);
        assert!(e.devices.is_pinned(PHONE), "a blocked device is never evicted");
        let mut fx = Vec::new();
        e.consent(PHONE, "203.0.113.7".parse().unwrap(), 1002, &mut fx);
        e.revoke(PHONE, &"203.0.113.7".parse().unwrap(), &mut fx);
        assert!(e.devices.is_pinned(PHONE), "one block left");
        let lists = std::mem::take(&mut e.policy.lists);
        e.reload(Policy::new(config(Mode::Monitor, Verdict::Block, Verdict::Allow), lists), 1003, &mut fx);
        assert_eq!(e.block_count(), 0);
        assert!(!e.devices.is_pinned(PHONE), "no block, no consent, not configured: evictable again");
    }

    #[test]
    fn at_the_cap_the_least_recently_given_block_is_forgotten_in_o1() {
        let mut e = engine(Mode::Enforce, Verdict::Block, Verdict::Allow);
        let mut fx = Vec::new();
        for i in 0..(MAX_BLOCKS as u32 + 3) {
            let dst = IpAddr::from((0xc612_0000u32 + i).to_be_bytes());
            e.add_block(PHONE, dst, Rule::Unlisted, Names::default(), 1000, &mut fx);
        }
        assert_eq!(e.block_count(), MAX_BLOCKS);
        assert_eq!(e.counters.blocks_evicted, 3);
        let first = IpAddr::from(0xc612_0000u32.to_be_bytes());
        assert!(fx.contains(&Effect::Journal(Line::Remove { mac: PHONE, addr: first })), "the journal forgets it too");
        assert!(e.devices.is_pinned(PHONE));
    }
}

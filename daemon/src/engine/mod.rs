//! The engine: the pure heart of the daemon. It takes what the kernel
//! reports (flows, neighbours, addresses) and what the owner commands, and
//! returns effects (set changes, flows to cut, alert lines, a state to
//! persist) for the adapters to carry out. No sockets, no clock: `now` is
//! passed in (unix seconds), so every decision is unit-tested.

mod bypass;
mod commands;
mod enforce;
mod events;
mod filter;
mod judge;
mod report;

pub mod destinations;
pub mod devices;
pub mod identify;
pub mod netmap;

pub use bypass::BypassAttempt;
pub use report::{DeviceReport, Explanation, Status};

use crate::hash::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::alert::{Alert, Verb};
use crate::bounded::{BoundedMap, Insert};
use crate::config::Mode;
use crate::engine::destinations::{Destinations, Seen};
use crate::engine::devices::DeviceTable;
use crate::codec::dns::{AddrRecord, DnsAnswer};
use crate::policy::geoip::GeoInfo;
use crate::names::cache::{NameCache, Names};
use crate::names::leases::Lease;
use crate::mac::Mac;
use crate::engine::netmap::NetMap;
use crate::nft::{Elem, SetChange};
use crate::policy::{Judgement, Policy, Rule};
use crate::policy::selector::{Destination, Selector};
use crate::store::journal::{BlockEntry, Line};
use crate::store::state::{Quarantine, State, MAX_FIRST_SEEN};
use crate::names::trust::{self, Provenance, Resolver};
use crate::policy::verdict::Verdict;

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
/// `DEVICE action=new` lines a minute at most; more new MACs are counted.
pub const MAX_ANNOUNCED_PER_MINUTE: u32 = 10;
/// Flows whose byte counters are remembered between readings.
pub const MAX_COUNTED: usize = 65_536;

/// A flow in its original direction, as conntrack reports it.
pub use crate::codec::conntrack::Flow;

/// Which existing flows to cut (conntrack entries to delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// This one flow, just judged: deleted by its tuple, no table dump.
    Flow(Flow),
    /// Every flow from these addresses (one device's) to `dst`.
    To { addrs: Vec<IpAddr>, dst: IpAddr },
    /// Every flow of these addresses to or from the internet.
    Device(Vec<IpAddr>),
    /// The flows of these addresses (one device's, whose profile now
    /// blocks `dns_bypass`) that go around the router's resolver and were
    /// opened before its element: DNS to another resolver not redirected,
    /// 853, DoH endpoints. Cut, their next packets meet the bypass rules.
    Bypass(Vec<IpAddr>),
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
    /// DNS answers held in the queue (`dns_hold`), those passed at once
    /// because they were no readable answer, and those rewritten to
    /// NXDOMAIN (`dns_filter`).
    pub dns_held: u64,
    pub dns_held_unreadable: u64,
    pub dns_nxdomain: u64,
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
    /// Conntrack dumps run to judge the flows dropped for room.
    pub pending_recoveries: u64,
    /// MACs seen for the first time and announced (`DEVICE action=new`),
    /// and those past the rate left unannounced.
    pub devices_new: u64,
    pub devices_new_unannounced: u64,
    /// Devices forgotten from the persisted first-seen table (full).
    pub first_seen_evicted: u64,
    /// Attempts to go around the router's resolver (`dns_bypass`), logged
    /// or suppressed, and the packets of them the kernel cut and logged.
    pub dns_bypass: u64,
    pub dns_bypass_cut: u64,
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
    /// Start of the current minute of announcements, and lines in it.
    announced: (u64, u32),
    /// `dns_bypass`: the devices in `bypass_mac`, the DoH endpoints.
    bypass: bypass::BypassState,
    /// Bypass lines per (device, destination): when last logged.
    bypass_suppress: BoundedMap<(Mac, IpAddr), u64>,
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
        let mut e = Engine {
            policy,
            state,
            devices: DeviceTable::new(MAX_DEVICES),
            net,
            blocks: BoundedMap::new(MAX_BLOCKS),
            suppress: BoundedMap::new(MAX_SUPPRESS),
            lease_names: HashMap::default(),
            names: NameCache::new(MAX_NAME_ENTRIES, MAX_NAME_BYTES),
            destinations: Destinations::default(),
            counted: BoundedMap::new(MAX_COUNTED),
            block_holds: HashMap::default(),
            counters: Counters::default(),
            started: now,
            announced: (0, 0),
            bypass: Default::default(),
            bypass_suppress: BoundedMap::new(MAX_SUPPRESS),
        };
        // The configured devices' elements; the table is built with them.
        e.sync_bypass(&mut Vec::new());
        e
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub(super) fn monitor(&self) -> bool {
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

    /// Every element leash holds now (for a table rebuild on reload): also
    /// `bypass_mac`'s, which are derived, not persisted.
    pub fn all_elements(&self, now: u64) -> Vec<(Elem, Option<Duration>)> {
        let mut out: Vec<_> = self.persisted_elements().into_iter().map(|e| (e, None)).collect();
        out.extend(self.bypass_elements().map(|e| (e, None)));
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
    pub(super) fn wants_pin(&self, mac: Mac) -> bool {
        self.policy.device_config(mac).is_some()
            || self.state.consents.get(&mac).is_some_and(|c| !c.is_empty())
            || self.is_quarantined(mac)
            || self.block_holds.contains_key(&mac)
    }

    /// Tells the device table what `wants_pin` says now.
    pub(super) fn refresh_pin(&mut self, mac: Mac) {
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

    pub(super) fn learning(&self, mac: Mac, now: u64) -> bool {
        let learn = self.policy.config.defaults.learn.as_secs();
        learn > 0 && self.state.first_seen.get(&mac).is_some_and(|t| now < t.saturating_add(learn))
    }

}

pub fn proto_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string().into(),
    }
}

#[cfg(test)]
mod tests;

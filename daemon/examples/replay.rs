//! Replays conntrack NEW events through the pure core, the path the daemon
//! takes for each one (`conntrack::messages` → `conntrack::parse_message` →
//! `Engine::on_flow`), for the cost budget (scripts/bench-cost.sh):
//!
//!   replay N    judge the first N of a fixed stream of 11 000 events
//!
//! The stream is always built whole, so that two runs under callgrind
//! differ only by the events judged: (Ir(N2) − Ir(N1)) / (N2 − N1) is the
//! cost of one event, start-up cancelled.
//!
//! The policy is a realistic worst case for the deny-list lookup: a profile
//! whose deny list holds 4 096 CIDRs (documentation and benchmarking ranges,
//! IPv4 and IPv6), devices with consents, and events of which most go to
//! unlisted destinations (so the whole list is searched), some to denied
//! ones (blocks) and some to consented ones. No device is quarantined
//! (that would make its events cheap).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use leash::engine::{Engine, Flow};
use leash::policy::lists::LoadedList;
use leash::mac::Mac;
use leash::codec::conntrack;
use leash::codec::nla::{NlWriter, NLM_F_CREATE, NLM_F_EXCL};
use leash::policy::Policy;
use leash::store::state::State;

const STREAM: usize = 11_000;
const START: u64 = 1_700_000_000;

const CONFIG: &str = r#"
[daemon]
mode = "enforce"
lan = ["br-lan"]
alert_interval = "1h"

[defaults]
profile = "phone"

[profile.phone]
unlisted = "allow"
denied = "block"
deny = ["telemetry"]

[profile.iot]
unlisted = "alert"
denied = "block"
deny = ["telemetry"]

[list.telemetry]
selectors = ["=collector.example.com"]

[[device]]
mac = "02:00:00:00:07:01"
name = "living-room-camera"
profile = "iot"
consent = ["52.94.0.0/16", "ring.com"]

[[device]]
mac = "02:00:00:00:07:02"
name = "phone"
consent = ["17.0.0.0/8"]
"#;

/// 4 096 deny entries: /32s in 198.18.0.0/15 (RFC 2544), 192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24, and /48s in 2001:db8::/32.
fn deny_nets() -> Vec<leash::policy::cidr::Cidr> {
    let mut v = Vec::new();
    for i in 0..3072u32 {
        v.push(format!("198.{}.{}.{}/32", 18 + (i >> 16), (i >> 8) & 0xff, i & 0xff));
    }
    for net in ["192.0.2", "198.51.100", "203.0.113"] {
        for i in 0..256 {
            v.push(format!("{net}.{i}/32"));
        }
    }
    for i in 0..256 {
        v.push(format!("2001:db8:{i:x}::/48"));
    }
    assert_eq!(v.len(), 4096);
    v.iter().map(|s| s.parse().expect("cidr")).collect()
}

/// A NEW event laid out as the kernel sends it (daemon/src/netlink/captured.rs,
/// CT_NEW_TCP4: 232 bytes with tuples, id, status, timeout, protoinfo,
/// synproxy and mark).
fn ct_new(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, id: u32) -> Vec<u8> {
    fn tuple(w: &mut NlWriter, ty: u16, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
        let t = w.begin_nested(ty);
        let ip = w.begin_nested(1);
        w.attr(1, &src.octets());
        w.attr(2, &dst.octets());
        w.end_nested(ip);
        let p = w.begin_nested(2);
        w.attr_u8(1, 6);
        w.attr_u16_be(2, sport);
        w.attr_u16_be(3, dport);
        w.end_nested(p);
        w.end_nested(t);
    }
    let mut w = NlWriter::new();
    w.begin_msg(0x0100, NLM_F_CREATE | NLM_F_EXCL, 0);
    w.nfgenmsg(2, 0);
    tuple(&mut w, 1, src, dst, sport, dport);
    tuple(&mut w, 2, dst, src, dport, sport);
    w.attr_u32_be(12, id);
    w.attr_u32_be(3, 8);
    w.attr_u32_be(7, 120);
    let pi = w.begin_nested(4);
    let tcp = w.begin_nested(1);
    w.attr_u8(1, 1);
    w.attr_u8(2, 7);
    w.attr_u8(3, 0);
    w.attr(4, &[0x0a, 0]);
    w.attr(5, &[0x0a, 0]);
    w.end_nested(tcp);
    w.end_nested(pi);
    let sp = w.begin_nested(24);
    w.attr_u32_be(1, 0);
    w.attr_u32_be(2, 0);
    w.attr_u32_be(3, 0);
    w.end_nested(sp);
    w.attr_u32_be(8, 0);
    w.end_msg();
    w.finish()
}

/// Event i: which device, to where. 80 % unlisted, 10 % denied, 10 % consented.
fn event(i: usize) -> Vec<u8> {
    let dev = [11u8, 12, 13, 14][i % 4];
    let src = Ipv4Addr::new(192, 168, 7, dev);
    let k = (i / 4) as u32;
    let dst = match i % 10 {
        0 => Ipv4Addr::new(198, 18, ((k >> 8) % 12) as u8, k as u8),
        1 if dev == 11 => Ipv4Addr::new(52, 94, (k >> 8) as u8, k as u8),
        1 => Ipv4Addr::new(17, (k >> 16) as u8, (k >> 8) as u8, k as u8),
        _ => Ipv4Addr::new(45 + (k % 50) as u8, (k >> 8) as u8, k as u8, 10),
    };
    ct_new(src, dst, 40_000 + (i % 20_000) as u16, 443, i as u32)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000).min(STREAM);
    let config = leash::config::parse_toml(Path::new("replay.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let mut lists = BTreeMap::new();
    let telemetry = LoadedList::build(&config.lists["telemetry"], [leash::policy::lists::ListContent {
        nets: deny_nets(),
        ..Default::default()
    }]);
    lists.insert("telemetry".to_string(), telemetry);
    let mut engine = Engine::new(Policy::new(config, lists), State::new(), START);
    engine.net.link(3, "br-lan");
    engine.net.link(4, "wan");
    engine.net.addr(3, "192.168.7.1".parse().unwrap(), 24);
    engine.net.addr(4, "100.64.0.2".parse().unwrap(), 24);
    let mut fx = Vec::new();
    for (dev, mac) in [(11u8, 1u8), (12, 2), (13, 3), (14, 4)] {
        engine.on_neighbour(3, IpAddr::V4(Ipv4Addr::new(192, 168, 7, dev)), Some(Mac([2, 0, 0, 0, 7, mac])), false, START, &mut fx);
    }

    let stream: Vec<Vec<u8>> = (0..STREAM).map(event).collect();
    assert_eq!(stream[0].len(), 232, "the layout of a captured NEW event");

    let mut effects = 0usize;
    for (i, buf) in stream[..n].iter().enumerate() {
        let now = START + i as u64 / 100;
        for msg in conntrack::messages(buf) {
            if let Ok(Some(ev)) = msg.and_then(conntrack::parse_message) {
                let o = ev.orig;
                let flow = Flow { src: o.src, dst: o.dst, proto: o.proto, sport: o.sport, dport: o.dport };
                engine.on_flow(&flow, now, &mut fx);
                effects += fx.len();
                fx.clear();
            }
        }
    }
    let c = &engine.counters;
    println!(
        "events={n} judged={} ignored={} alerts={} suppressed={} blocks={} quarantines={} effects={effects}",
        c.flows_judged, c.flows_ignored, c.alerts, c.alerts_suppressed, c.blocks, c.quarantines
    );
}
